//! The input line: editing, its own history (Up/Down), and Tab completion
//! of names, rooms and commands. Pure state: keys in, text out.

/// The longest line kept, in characters (a paste past it is cut): the
/// server refuses far shorter messages anyway.
pub const MAX_LINE: usize = 16 * 1024;
/// Lines remembered for Up/Down at most.
const HISTORY: usize = 500;

/// A Tab completion under way: Tab again offers the next candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Completion {
    /// Where the completed word starts (a char index).
    start: usize,
    candidates: Vec<String>,
    /// The candidate now in the line.
    index: usize,
}

/// The line being typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    chars: Vec<char>,
    /// The cursor, a char index in `0..=chars.len()`.
    cursor: usize,
    history: Vec<String>,
    /// While browsing the history: the entry shown, and the line that was
    /// being typed before.
    browsing: Option<(usize, String)>,
    completion: Option<Completion>,
}

impl Input {
    /// The text.
    #[must_use]
    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// The cursor, in characters from the start.
    #[must_use]
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Types one character at the cursor.
    pub fn insert(&mut self, c: char) {
        self.completion = None;
        if self.chars.len() < MAX_LINE && !c.is_control() {
            self.chars.insert(self.cursor.min(self.chars.len()), c);
            self.cursor += 1;
        }
    }

    /// Types a pasted text (line breaks become spaces: one Enter sends it).
    pub fn paste(&mut self, text: &str) {
        for c in text.chars() {
            self.insert(if c == '\n' || c == '\r' || c == '\t' { ' ' } else { c });
        }
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        self.completion = None;
        if self.cursor > 0 && self.cursor <= self.chars.len() {
            self.cursor -= 1;
            self.chars.remove(self.cursor);
        }
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        self.completion = None;
        if self.cursor < self.chars.len() {
            self.chars.remove(self.cursor);
        }
    }

    /// Deletes the word before the cursor (Ctrl-W).
    pub fn delete_word(&mut self) {
        self.completion = None;
        let end = self.cursor.min(self.chars.len());
        let mut start = end;
        while start > 0 && self.chars.get(start - 1).is_some_and(|c| c.is_whitespace()) {
            start -= 1;
        }
        while start > 0 && self.chars.get(start - 1).is_some_and(|c| !c.is_whitespace()) {
            start -= 1;
        }
        self.chars.drain(start..end);
        self.cursor = start;
    }

    /// Clears the line (Ctrl-U).
    pub fn clear(&mut self) {
        self.set(String::new());
    }

    /// Moves the cursor by `delta` characters, within the line.
    pub fn move_by(&mut self, delta: isize) {
        self.completion = None;
        self.cursor = self.cursor.saturating_add_signed(delta).min(self.chars.len());
    }

    /// Moves the cursor to the start (true) or the end of the line.
    pub fn home_end(&mut self, home: bool) {
        self.completion = None;
        self.cursor = if home { 0 } else { self.chars.len() };
    }

    fn set(&mut self, text: String) {
        self.chars = text.chars().take(MAX_LINE).collect();
        self.cursor = self.chars.len();
        self.completion = None;
    }

    /// Enter: the line, now remembered in the history; the input is empty
    /// again.
    pub fn take(&mut self) -> String {
        let text = self.text();
        self.browsing = None;
        self.set(String::new());
        if !text.trim().is_empty() && self.history.last() != Some(&text) {
            if self.history.len() >= HISTORY {
                self.history.remove(0);
            }
            self.history.push(text.clone());
        }
        text
    }

    /// Up (true: older) or Down (newer) in the history.
    pub fn recall(&mut self, older: bool) {
        let next = match (&self.browsing, older) {
            (None, true) => self.history.len().checked_sub(1),
            (None, false) => return,
            (Some((i, _)), true) => Some(i.saturating_sub(1)),
            (Some((i, _)), false) => Some(i + 1).filter(|&n| n < self.history.len()),
        };
        match next {
            Some(i) => {
                let typed = match self.browsing.take() {
                    Some((_, typed)) => typed,
                    None => self.text(),
                };
                let entry = self.history.get(i).cloned().unwrap_or_default();
                self.set(entry);
                self.browsing = Some((i, typed));
            }
            // Past the newest entry: back to what was being typed.
            None => {
                if let Some((_, typed)) = self.browsing.take() {
                    self.set(typed);
                }
            }
        }
    }

    /// Tab: completes the word before the cursor from `words` (names and
    /// rooms; commands are offered for a first word starting with `/`),
    /// or offers the next candidate on a repeated Tab.
    pub fn complete(&mut self, words: &[String]) {
        if let Some(mut done) = self.completion.take() {
            if done.candidates.len() > 1 {
                done.index = (done.index + 1) % done.candidates.len();
                let word = done.candidates.get(done.index).cloned().unwrap_or_default();
                self.replace_word(done.start, &word);
            }
            self.completion = Some(done);
            return;
        }
        let end = self.cursor.min(self.chars.len());
        let mut start = end;
        while start > 0 && self.chars.get(start - 1).is_some_and(|c| !c.is_whitespace()) {
            start -= 1;
        }
        let prefix: String = self.chars.get(start..end).unwrap_or_default().iter().collect();
        let first_word = self.chars.get(..start).unwrap_or_default().iter().all(|c| c.is_whitespace());
        let mut candidates: Vec<String> = if first_word && prefix.starts_with('/') {
            crate::slash::complete(&prefix).map(str::to_owned).collect()
        } else {
            // Rooms may be typed with their '#'.
            let (hash, bare) = prefix.strip_prefix('#').map_or(("", prefix.as_str()), |b| ("#", b));
            let bare = bare.to_lowercase();
            words.iter().filter(|w| w.to_lowercase().starts_with(&bare)).map(|w| format!("{hash}{w}")).collect()
        };
        candidates.sort();
        candidates.dedup();
        if candidates.is_empty() {
            return;
        }
        let word = candidates.first().cloned().unwrap_or_default();
        self.replace_word(start, &word);
        self.completion = Some(Completion { start, candidates, index: 0 });
    }

    /// Puts `word` and a space in place of the word from `start` to the cursor.
    fn replace_word(&mut self, start: usize, word: &str) {
        let end = self.cursor.min(self.chars.len());
        // A completion put a space after the word: replace it too.
        let new: Vec<char> = word.chars().chain([' ']).collect();
        let len = new.len();
        self.chars.splice(start.min(end)..end, new);
        self.chars.truncate(MAX_LINE);
        self.cursor = (start + len).min(self.chars.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Input {
        let mut input = Input::default();
        input.paste(s);
        input
    }

    #[test]
    fn editing_moves_and_deletes_at_the_cursor() {
        let mut input = typed("helo world");
        input.home_end(true);
        input.move_by(3);
        input.insert('l');
        assert_eq!(input.text(), "hello world");
        input.home_end(false);
        input.delete_word();
        assert_eq!(input.text(), "hello ");
        input.backspace();
        input.move_by(-100);
        input.delete();
        assert_eq!(input.text(), "ello");
    }

    #[test]
    fn history_goes_back_and_returns_to_what_was_typed() {
        let mut input = Input::default();
        for line in ["one", "two"] {
            input.paste(line);
            assert_eq!(input.take(), line);
        }
        input.paste("draft");
        input.recall(true);
        assert_eq!(input.text(), "two");
        input.recall(true);
        assert_eq!(input.text(), "one");
        input.recall(true);
        assert_eq!(input.text(), "one");
        input.recall(false);
        assert_eq!(input.text(), "two");
        input.recall(false);
        assert_eq!(input.text(), "draft");
    }

    #[test]
    fn tab_completes_commands_names_and_rooms_and_cycles() {
        let words = ["bob".to_owned(), "bea".to_owned(), "general".to_owned()];
        let mut input = typed("/jo");
        input.complete(&words);
        assert_eq!(input.text(), "/join ");
        input.paste("gen");
        input.complete(&words);
        assert_eq!(input.text(), "/join general ");
        let mut input = typed("/send-file #g");
        input.complete(&words);
        assert_eq!(input.text(), "/send-file #general ");
        let mut input = typed("/msg b");
        input.complete(&words);
        assert_eq!(input.text(), "/msg bea ");
        input.complete(&words);
        assert_eq!(input.text(), "/msg bob ");
        input.complete(&words);
        assert_eq!(input.text(), "/msg bea ");
        let mut input = typed("zz");
        input.complete(&words);
        assert_eq!(input.text(), "zz");
    }

    #[test]
    fn a_huge_paste_is_cut_and_controls_never_enter() {
        let mut input = typed(&"x".repeat(MAX_LINE + 10));
        assert_eq!(input.text().len(), MAX_LINE);
        let mut input2 = typed("a\x1b[2Jb\nc");
        assert_eq!(input2.text(), "a[2Jb c");
        input2.clear();
        input.clear();
        assert_eq!(input.text(), "");
    }
}
