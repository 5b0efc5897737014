//! Framing: how the byte stream is cut into frames (PROTOCOL.md §3).
//!
//! Every frame is `kind (1) | length (2, big-endian) | body (length bytes)`.
//! The length bound for each kind is checked as soon as the three header bytes
//! are present, so a hostile length is refused before any byte of the body is
//! awaited or buffered.

use crate::error::DecodeError;
use crate::record;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 3;
/// Largest body of a plaintext handshake frame (one handshake message).
pub const MAX_HANDSHAKE_FRAME: usize = 4096;
/// Largest frame of any kind, header included.
pub const MAX_FRAME: usize = HEADER_LEN + record::MAX_CIPHERTEXT;

/// The kind byte that starts every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A plaintext alert (before traffic keys exist): one code byte.
    Alert,
    /// A plaintext handshake message: ServerIdentity, ClientHello, ServerHello.
    Handshake,
    /// An AEAD-protected record.
    Record,
}

impl FrameKind {
    /// The kind's byte on the wire.
    #[must_use]
    pub fn to_u8(self) -> u8 {
        match self {
            FrameKind::Alert => 0x15,
            FrameKind::Handshake => 0x16,
            FrameKind::Record => 0x17,
        }
    }

    fn from_u8(b: u8) -> Result<Self, DecodeError> {
        match b {
            0x15 => Ok(FrameKind::Alert),
            0x16 => Ok(FrameKind::Handshake),
            0x17 => Ok(FrameKind::Record),
            _ => Err(DecodeError::UnknownFrameKind),
        }
    }

    fn body_len_ok(self, len: usize) -> bool {
        match self {
            FrameKind::Alert => len == 1,
            FrameKind::Handshake => (1..=MAX_HANDSHAKE_FRAME).contains(&len),
            FrameKind::Record => record::is_valid_ciphertext_len(len),
        }
    }
}

/// One complete frame taken off the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the body holds.
    pub kind: FrameKind,
    /// The three header bytes as received (the record layer authenticates them).
    pub header: [u8; HEADER_LEN],
    /// The body, exactly as long as the header says.
    pub body: Vec<u8>,
}

impl Frame {
    /// Parses the header at the start of `buf`: `Ok(None)` if fewer than three
    /// bytes are present, an error if the kind or length is invalid, else the
    /// kind and body length.
    pub fn peek_header(buf: &[u8]) -> Result<Option<(FrameKind, usize)>, DecodeError> {
        let Some(&[kind, len_hi, len_lo]) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let kind = FrameKind::from_u8(kind)?;
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if !kind.body_len_ok(len) {
            return Err(DecodeError::FrameLength);
        }
        Ok(Some((kind, len)))
    }

    /// Encodes a frame. The caller guarantees the body length suits the kind;
    /// a debug assertion checks it.
    #[must_use]
    pub fn encode(kind: FrameKind, body: &[u8]) -> Vec<u8> {
        debug_assert!(kind.body_len_ok(body.len()));
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&header_for(kind, body.len()));
        out.extend_from_slice(body);
        out
    }
}

/// The header bytes for a body of `len` bytes (`len` must fit in 16 bits).
#[must_use]
pub(crate) fn header_for(kind: FrameKind, len: usize) -> [u8; HEADER_LEN] {
    let len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    [kind.to_u8(), len[0], len[1]]
}

/// Buffers stream bytes and hands out whole frames.
///
/// Memory is bounded by the caller's read size plus one frame: push at most a
/// read's worth of bytes, then call [`Deframer::next_frame`] until it returns
/// `Ok(None)` before pushing again.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
}

impl Deframer {
    /// An empty deframer.
    #[must_use]
    pub fn new() -> Self {
        Deframer::default()
    }

    /// Appends bytes received from the peer.
    pub fn push(&mut self, data: &[u8]) {
        // Compact before growing so the buffer never holds consumed bytes
        // across pushes.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned as frames.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame: `Ok(None)` means "incomplete, read more";
    /// an error means the stream is invalid and must be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        let Some((kind, len)) = Frame::peek_header(pending)? else {
            return Ok(None);
        };
        let Some(whole) = pending.get(..HEADER_LEN + len) else {
            return Ok(None);
        };
        let (head, body) = whole.split_at(HEADER_LEN);
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(head);
        let body = body.to_vec();
        self.start += HEADER_LEN + len;
        Ok(Some(Frame { kind, header, body }))
    }

    /// Call at end of stream: an error if a partial frame is still buffered.
    pub fn finish(&self) -> Result<(), crate::Error> {
        if self.buffered() == 0 { Ok(()) } else { Err(crate::Error::Truncated) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_length_is_refused_from_the_header_alone() {
        let mut d = Deframer::new();
        d.push(&[0x17, 0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(DecodeError::FrameLength));
        let mut d = Deframer::new();
        d.push(&[0x16, 0x10, 0x01]); // 4097 > MAX_HANDSHAKE_FRAME
        assert_eq!(d.next_frame(), Err(DecodeError::FrameLength));
    }

    #[test]
    fn incomplete_is_not_invalid() {
        let mut d = Deframer::new();
        d.push(&[0x16]);
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[0x00, 0x02, 0xaa]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(crate::Error::Truncated));
        d.push(&[0xbb, 0x15, 0x00, 0x01, 0x00]);
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!((f.kind, f.body.as_slice()), (FrameKind::Handshake, &[0xaa, 0xbb][..]));
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!((f.kind, f.body.as_slice()), (FrameKind::Alert, &[0][..]));
        assert_eq!(d.next_frame(), Ok(None));
        assert!(d.finish().is_ok());
    }

    #[test]
    fn unknown_kind_and_bad_alert_length_are_invalid() {
        assert_eq!(Frame::peek_header(&[0x42, 0, 1]), Err(DecodeError::UnknownFrameKind));
        assert_eq!(Frame::peek_header(&[0x15, 0, 2]), Err(DecodeError::FrameLength));
        assert_eq!(Frame::peek_header(&[0x16, 0, 0]), Err(DecodeError::FrameLength));
        // A record body must be a padding bucket plus the 16-byte tag.
        assert_eq!(Frame::peek_header(&[0x17, 0, 47]), Err(DecodeError::FrameLength));
        assert!(Frame::peek_header(&[0x17, 0, 48]).unwrap().is_some());
    }
}
