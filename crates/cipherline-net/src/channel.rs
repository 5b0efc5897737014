//! An established session carrying application messages.

use std::time::Instant;

use cipherline_proto::app::{MAX_MESSAGE, MessageDecoder};
use cipherline_proto::error::DecodeError;
use cipherline_proto::{Error, Received, Session};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::{FrameReader, NetError};

/// An encrypted, authenticated message channel over `R`/`W`.
pub struct Channel<R, W> {
    reader: FrameReader<R>,
    writer: W,
    session: Session,
    messages: MessageDecoder,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Channel<R, W> {
    pub(crate) fn new(reader: FrameReader<R>, writer: W, session: Session) -> Self {
        Channel { reader, writer, session, messages: MessageDecoder::new(MAX_MESSAGE) }
    }

    /// The session (suite, server key, peer identity, handshake hash).
    #[must_use]
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Refuses incoming application messages longer than `max` bytes.
    pub fn set_max_message(&mut self, max: usize) {
        self.messages = MessageDecoder::new(max);
    }

    /// The next whole application message (type byte and body), or
    /// `Err(NetError::Closed)` after the peer's close_notify.
    ///
    /// Cancel-safe: it only awaits [`FrameReader::read_frame`]; everything
    /// after a frame arrives is synchronous.
    pub async fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        loop {
            match self.messages.next_message() {
                Ok(Some(msg)) => return Ok(msg),
                Ok(None) => {}
                Err(DecodeError::FieldTooLong) => return Err(NetError::MessageTooLarge),
                Err(e) => return Err(Error::from(e).into()),
            }
            let Some(frame) = self.reader.read_frame().await? else {
                self.session.handle_eof()?;
                return Err(NetError::Closed);
            };
            match self.session.handle_frame(&frame, Instant::now())? {
                Received::Data(data) => self.messages.push(&data),
                Received::KeyUpdate => {}
                Received::CloseNotify => return Err(NetError::Closed),
            }
        }
    }

    /// Encrypts and writes one encoded application message (as produced by
    /// `ClientMessage::encode` / `ServerMessage::encode`).
    pub async fn send(&mut self, message: &[u8]) -> Result<(), NetError> {
        let wire = self.session.send(message, Instant::now())?;
        self.writer.write_all(&wire).await?;
        Ok(())
    }

    /// Ratchets keys both ways now (the user's `/rekey`).
    pub async fn rekey(&mut self) -> Result<(), NetError> {
        let wire = self.session.request_key_update(Instant::now())?;
        self.writer.write_all(&wire).await?;
        Ok(())
    }

    /// When [`Channel::handle_timeout`] should next run (time-based key update).
    #[must_use]
    pub fn next_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// Runs time-based work that is due (a key update).
    pub async fn handle_timeout(&mut self) -> Result<(), NetError> {
        let wire = self.session.handle_timeout(Instant::now())?;
        if !wire.is_empty() {
            self.writer.write_all(&wire).await?;
        }
        Ok(())
    }

    /// Closes cleanly: close_notify, then shuts the write side.
    pub async fn close(&mut self) -> Result<(), NetError> {
        let wire = self.session.close()?;
        self.writer.write_all(&wire).await?;
        self.writer.shutdown().await?;
        Ok(())
    }

    /// Ends the connection after an error: sends the alert the error calls
    /// for (if any), best effort, and shuts the write side.
    pub async fn abort(&mut self, err: &NetError) {
        let code = match err {
            NetError::Protocol(e) => e.alert(),
            NetError::Timeout(_) => Some(cipherline_proto::AlertCode::Timeout),
            NetError::MessageTooLarge => Some(cipherline_proto::AlertCode::RecordOverflow),
            NetError::Io(_) | NetError::Closed => None,
        };
        if let Some(code) = code
            && let Ok(wire) = self.session.alert(code)
        {
            let _ = self.writer.write_all(&wire).await;
        }
        let _ = self.writer.shutdown().await;
    }
}
