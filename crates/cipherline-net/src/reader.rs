//! Reading whole frames from a byte stream.

use cipherline_proto::{Deframer, Frame};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::NetError;

/// Bytes read from the socket at a time while data keeps coming.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes read at a time by a connection that is idle (no partial frame,
/// and its last read did not fill the buffer): a typical chat record (a
/// 100-byte message is a 147-byte frame) fits, and ten thousand idle
/// connections do not each pin a [`READ_CHUNK`] buffer while they wait.
const IDLE_CHUNK: usize = 512;

/// Reads frames from `R`, holding at most one partial frame plus one read.
///
/// The read buffer follows the traffic: [`READ_CHUNK`] while a frame is
/// incomplete or reads come back full, [`IDLE_CHUNK`] once the connection
/// goes quiet, when the deframer's buffer is released too. So a waiting
/// connection holds about half a kilobyte instead of 16 KiB or more, and a
/// busy one still reads 16 KiB per system call; a buffer changes size only
/// when the traffic does, not per frame.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    deframer: Deframer,
    buf: Vec<u8>,
    /// Whether the last read filled the buffer (more is probably waiting).
    busy: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a stream.
    pub fn new(inner: R) -> Self {
        FrameReader { inner, deframer: Deframer::new(), buf: Vec::new(), busy: false }
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
            let idle = !self.busy && self.deframer.buffered() == 0;
            let want = if idle { IDLE_CHUNK } else { READ_CHUNK };
            if self.buf.len() != want {
                if idle {
                    // Empty, so nothing is lost: this only frees the
                    // capacity the last burst left behind.
                    self.deframer = Deframer::new();
                }
                self.buf = vec![0; want];
            }
            let n = self.inner.read(&mut self.buf).await?;
            if n == 0 {
                self.deframer.finish()?;
                return Ok(None);
            }
            self.deframer.push(self.buf.get(..n).unwrap_or_default());
            self.busy = n == self.buf.len();
        }
    }

    /// Gives back the stream.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use cipherline_proto::FrameKind;
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn frame(len: usize, fill: u8) -> Vec<u8> {
        Frame::encode(FrameKind::Handshake, &vec![fill; len])
    }

    #[tokio::test]
    async fn bursts_and_quiet_spells_deliver_every_frame_whole() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let mut reader = FrameReader::new(rx);
        // A burst written at once, with frames larger than an idle read.
        let sizes = [1, 100, 600, 4096, 3, 2000, 4096, 4096, 4096, 4096, 50];
        let burst: Vec<u8> = sizes.iter().enumerate().flat_map(|(i, &n)| frame(n, i as u8)).collect();
        tx.write_all(&burst).await.unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(reader.read_frame().await.unwrap().unwrap().body, vec![i as u8; n]);
        }
        // Quiet again: the reader waits with the small buffer.
        tx.write_all(&frame(10, 0xaa)).await.unwrap();
        assert_eq!(reader.read_frame().await.unwrap().unwrap().body, vec![0xaa; 10]);
        assert_eq!(reader.buf.len(), IDLE_CHUNK);
        // A frame split across writes still arrives whole.
        let big = frame(3000, 0xbb);
        let (head, tail) = big.split_at(700);
        tx.write_all(head).await.unwrap();
        let pending = tokio::spawn(async move {
            let f = reader.read_frame().await.unwrap().unwrap();
            (f, reader)
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        tx.write_all(tail).await.unwrap();
        drop(tx);
        let (f, mut reader) = pending.await.unwrap();
        assert_eq!(f.body, vec![0xbb; 3000]);
        assert!(reader.read_frame().await.unwrap().is_none(), "clean end at a frame boundary");
    }
}
