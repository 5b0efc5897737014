//! Splitting the daemon's input into request lines, the same for standard
//! input (read on a thread) and for socket clients (read on the runtime):
//! both readers hand what they have read to [`Splitter::take`] and consume
//! what it used, so the rules below hold for both transports.
//!
//! Rules: a line ends at `\n`, which is not part of it (a `\r` before it
//! is kept: JSON reads it as whitespace); a line longer than the bound is
//! read past without being kept (so it never sits whole in memory) and
//! reported as [`TooLong`]; bytes after the last `\n` at the end of input
//! are a last line; an input that ends right after a `\n` has no line more.

/// A line over the bound: read past, not kept.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TooLong;

/// One line found: its bytes (without the `\n`), or [`TooLong`].
pub(super) type Line = Result<Vec<u8>, TooLong>;

/// The line being read: its bytes so far (at most the bound), or that it
/// is over the bound and being skipped.
pub(super) struct Splitter {
    max: usize,
    buf: Vec<u8>,
    /// The line is over the bound: its bytes are dropped up to its end.
    skipping: bool,
    /// Bytes of the line being read were seen (so the end of input ends it).
    started: bool,
}

impl Splitter {
    /// A splitter for lines of at most `max` bytes (without the `\n`).
    pub(super) fn new(max: usize) -> Splitter {
        Splitter { max, buf: Vec::new(), skipping: false, started: false }
    }

    /// Takes bytes from `available` (what a read gave, not yet used): how
    /// many it used (up to and with the first `\n`, or all of them), and
    /// the line that `\n` ended, if one did.
    #[must_use]
    pub(super) fn take(&mut self, available: &[u8]) -> (usize, Option<Line>) {
        if available.is_empty() {
            return (0, None);
        }
        self.started = true;
        let newline = available.iter().position(|&b| b == b'\n');
        let chunk = available.get(..newline.unwrap_or(available.len())).unwrap_or_default();
        if !self.skipping && self.buf.len().saturating_add(chunk.len()) <= self.max {
            self.buf.extend_from_slice(chunk);
        } else {
            // Checked before copying: the buffer never grows past `max`.
            self.skipping = true;
            self.buf = Vec::new();
        }
        match newline {
            Some(i) => (i.saturating_add(1), Some(self.line())),
            None => (available.len(), None),
        }
    }

    /// The input ended: the last line if bytes of one were read after the
    /// last `\n`.
    pub(super) fn end(&mut self) -> Option<Line> {
        self.started.then(|| self.line())
    }

    /// The line read so far, and a fresh start for the next.
    fn line(&mut self) -> Line {
        let line = if self.skipping { Err(TooLong) } else { Ok(std::mem::take(&mut self.buf)) };
        self.skipping = false;
        self.started = false;
        line
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    /// Every line of `input` fed in reads of `size` bytes, as a reader
    /// does: take what was read, consume what was used, read more.
    fn split(input: &[u8], size: usize, max: usize) -> Vec<Line> {
        let mut splitter = Splitter::new(max);
        let mut lines = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let read = &rest[..size.min(rest.len())];
            let (used, line) = splitter.take(read);
            assert!(used > 0 && used <= read.len());
            assert!(splitter.buf.len() <= max, "held {} bytes", splitter.buf.len());
            rest = &rest[used..];
            lines.extend(line);
        }
        lines.extend(splitter.end());
        lines
    }

    #[test]
    fn a_line_split_across_reads_is_one_line() {
        for size in [1, 2, 3, 7, 100] {
            let lines = split(b"{\"a\":1}\n{\"b\":22}\n", size, 100);
            assert_eq!(lines, vec![Ok(b"{\"a\":1}".to_vec()), Ok(b"{\"b\":22}".to_vec())], "reads of {size}");
        }
    }

    #[test]
    fn crlf_keeps_the_carriage_return_which_json_reads_as_whitespace() {
        let lines = split(b"{\"a\":1}\r\n\r\n", 4, 100);
        assert_eq!(lines, vec![Ok(b"{\"a\":1}\r".to_vec()), Ok(b"\r".to_vec())]);
        let value: serde_json::Value = serde_json::from_slice(lines[0].as_ref().unwrap()).unwrap();
        assert_eq!(value["a"], 1);
    }

    #[test]
    fn a_line_over_the_bound_is_refused_and_the_next_one_read() {
        let data = [vec![b'x'; 100], b"\nok\nlast".to_vec()].concat();
        for size in [1, 16, 200] {
            let lines = split(&data, size, 10);
            assert_eq!(lines, vec![Err(TooLong), Ok(b"ok".to_vec()), Ok(b"last".to_vec())], "reads of {size}");
        }
        // Exactly the bound fits; one more byte does not.
        assert_eq!(split(b"0123456789\n", 4, 10), vec![Ok(b"0123456789".to_vec())]);
        assert_eq!(split(b"0123456789a\nb", 4, 10), vec![Err(TooLong), Ok(b"b".to_vec())]);
        // Too long at the end of input, without a newline: still refused.
        assert_eq!(split(&[b'y'; 50], 8, 10), vec![Err(TooLong)]);
    }

    #[test]
    fn no_line_at_the_end_of_input_after_a_newline() {
        assert_eq!(split(b"", 4, 10), Vec::<Line>::new());
        assert_eq!(split(b"a\n", 4, 10), vec![Ok(b"a".to_vec())]);
        // An empty line is a line (the daemon skips blank ones).
        assert_eq!(split(b"\n\n", 1, 10), vec![Ok(Vec::new()), Ok(Vec::new())]);
        let mut splitter = Splitter::new(10);
        assert_eq!(splitter.take(b""), (0, None));
        assert_eq!(splitter.end(), None);
    }
}
