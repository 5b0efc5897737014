//! Strict big-endian field codec shared by frames and messages.
//!
//! [`Reader`] never panics and never allocates: it hands out sub-slices of the
//! input after checking each length against both the bytes present and the
//! field's own bound, and [`Reader::finish`] rejects trailing bytes. [`Writer`]
//! appends fields and refuses a variable-length field over its bound, so this
//! side can never emit what its own reader would reject.

use crate::error::{DecodeError, Error};

/// A cursor over a received message. Every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` from its first byte.
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not yet read.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes exactly `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a field prefixed by a one-byte length, refusing lengths over `max`.
    pub fn vec8(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u8()?);
        self.bounded(len, max)
    }

    /// Reads a field prefixed by a two-byte length, refusing lengths over `max`.
    pub fn vec16(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16()?);
        self.bounded(len, max)
    }

    fn bounded(&mut self, len: usize, max: usize) -> Result<&'a [u8], DecodeError> {
        // The bound is checked before the presence of the bytes so that an
        // oversized length is reported as such, not as "wait for more".
        if len > max {
            return Err(DecodeError::FieldTooLong);
        }
        self.take(len)
    }

    /// Succeeds only if every byte was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() { Ok(()) } else { Err(DecodeError::TrailingBytes) }
    }
}

/// An append-only encoder for outgoing messages.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    #[must_use]
    pub fn new() -> Self {
        Writer::default()
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends a one-byte-length-prefixed field of at most `max` bytes.
    pub fn vec8(&mut self, b: &[u8], max: usize) -> Result<(), Error> {
        let len = u8::try_from(b.len())
            .ok()
            .filter(|_| b.len() <= max)
            .ok_or(Error::ApiMisuse("field longer than its bound"))?;
        self.u8(len);
        self.bytes(b);
        Ok(())
    }

    /// Appends a two-byte-length-prefixed field of at most `max` bytes.
    pub fn vec16(&mut self, b: &[u8], max: usize) -> Result<(), Error> {
        let len = u16::try_from(b.len())
            .ok()
            .filter(|_| b.len() <= max)
            .ok_or(Error::ApiMisuse("field longer than its bound"))?;
        self.u16(len);
        self.bytes(b);
        Ok(())
    }

    /// The bytes written so far.
    #[must_use]
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_distinguishes_short_from_oversized() {
        // Length 5 with only 2 bytes present: truncated.
        assert_eq!(Reader::new(&[0, 5, 1, 2]).vec16(10), Err(DecodeError::Truncated));
        // Length 500 over a bound of 10: too long, even though bytes are missing too.
        assert_eq!(Reader::new(&[1, 0xf4]).vec16(10), Err(DecodeError::FieldTooLong));
    }

    #[test]
    fn finish_rejects_trailing_bytes() {
        let mut r = Reader::new(&[1, 2]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn writer_refuses_oversized_fields() {
        let mut w = Writer::new();
        assert!(w.vec8(&[0u8; 300], 1000).is_err());
        assert!(w.vec16(&[0u8; 10], 5).is_err());
        assert!(w.vec16(&[0u8; 5], 5).is_ok());
        assert_eq!(w.into_vec(), [0, 5, 0, 0, 0, 0, 0]);
    }
}
