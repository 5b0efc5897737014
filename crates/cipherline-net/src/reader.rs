//! Reading whole frames from a byte stream.

use cipherline_proto::{Deframer, Frame};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::NetError;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Reads frames from `R`, holding at most one partial frame plus one read.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    deframer: Deframer,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a stream.
    pub fn new(inner: R) -> Self {
        FrameReader { inner, deframer: Deframer::new(), buf: vec![0; READ_CHUNK] }
    }

    /// The next whole frame, or `Ok(None)` if the stream ended cleanly at a
    /// frame boundary.
    ///
    /// Cancel-safe: the only await is a single `read`, and bytes are handed
    /// to the deframer only once it completed, so dropping this future (in a
    /// `select!` or a timeout) loses nothing.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, NetError> {
        loop {
            if let Some(frame) = self.deframer.next_frame().map_err(cipherline_proto::Error::from)? {
                return Ok(Some(frame));
            }
            let n = self.inner.read(&mut self.buf).await?;
            if n == 0 {
                self.deframer.finish()?;
                return Ok(None);
            }
            self.deframer.push(self.buf.get(..n).unwrap_or_default());
        }
    }

    /// Gives back the stream.
    pub fn into_inner(self) -> R {
        self.inner
    }
}
