//! An established session carrying application messages, usable whole (one
//! task) or split into a reader and a writer (two tasks).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use cipherline_proto::app::{MAX_MESSAGE, MessageDecoder};
use cipherline_proto::error::DecodeError;
use cipherline_proto::{AlertCode, Error, Received, Session};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::{FrameReader, NetError};

/// The session both halves use. The lock is only ever held for one seal or
/// one open, never across an await.
type Shared = Arc<Mutex<Session>>;

fn lock(session: &Shared) -> MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The receiving half.
pub struct ChannelReader<R> {
    frames: FrameReader<R>,
    session: Shared,
    messages: MessageDecoder,
}

/// The sending half.
pub struct ChannelWriter<W> {
    writer: W,
    session: Shared,
}

/// An encrypted, authenticated message channel over `R`/`W`.
pub struct Channel<R, W> {
    reader: ChannelReader<R>,
    writer: ChannelWriter<W>,
}

impl<R: AsyncRead + Unpin> ChannelReader<R> {
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
            let Some(frame) = self.frames.read_frame().await? else {
                lock(&self.session).handle_eof()?;
                return Err(NetError::Closed);
            };
            let received = lock(&self.session).handle_record(frame, Instant::now())?;
            match received {
                Received::Data(data) => self.messages.push(&data),
                Received::KeyUpdate => {}
                Received::CloseNotify => return Err(NetError::Closed),
            }
        }
    }

    /// Refuses incoming application messages longer than `max` bytes.
    pub fn set_max_message(&mut self, max: usize) {
        self.messages = MessageDecoder::new(max);
    }
}

impl<W: AsyncWrite + Unpin> ChannelWriter<W> {
    /// Encrypts and writes one encoded application message.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), NetError> {
        let wire = lock(&self.session).send(message, Instant::now())?;
        self.writer.write_all(&wire).await?;
        Ok(())
    }

    /// Encrypts and writes several encoded application messages in one
    /// write, packed into records across message boundaries
    /// ([`Session::send_parts`]).
    pub async fn send_parts(&mut self, messages: &[&[u8]]) -> Result<(), NetError> {
        let wire = lock(&self.session).send_parts(messages, Instant::now())?;
        self.writer.write_all(&wire).await?;
        Ok(())
    }

    /// Ratchets keys both ways now (the user's `/rekey`).
    pub async fn rekey(&mut self) -> Result<(), NetError> {
        let wire = lock(&self.session).request_key_update(Instant::now())?;
        self.writer.write_all(&wire).await?;
        Ok(())
    }

    /// When [`ChannelWriter::handle_timeout`] should next run.
    #[must_use]
    pub fn next_timeout(&self) -> Option<Instant> {
        lock(&self.session).poll_timeout()
    }

    /// Runs time-based work that is due (a key update).
    pub async fn handle_timeout(&mut self) -> Result<(), NetError> {
        let wire = lock(&self.session).handle_timeout(Instant::now())?;
        if !wire.is_empty() {
            self.writer.write_all(&wire).await?;
        }
        Ok(())
    }

    /// Closes cleanly: close_notify, then shuts the write side.
    pub async fn close(&mut self) -> Result<(), NetError> {
        let wire = lock(&self.session).close()?;
        self.writer.write_all(&wire).await?;
        self.writer.shutdown().await?;
        Ok(())
    }

    /// Refuses the peer with an encrypted alert (best effort) and shuts the
    /// write side; e.g. `unknown_identity` for a key the server's policy
    /// does not admit.
    pub async fn refuse(&mut self, code: AlertCode) {
        let wire = lock(&self.session).alert(code);
        if let Ok(wire) = wire {
            let _ = self.writer.write_all(&wire).await;
        }
        let _ = self.writer.shutdown().await;
    }

    /// Ends the connection after an error: sends the alert the error calls
    /// for (if any), best effort, and shuts the write side.
    pub async fn abort(&mut self, err: &NetError) {
        let code = match err {
            NetError::Protocol(e) => e.alert(),
            NetError::Timeout(_) => Some(AlertCode::Timeout),
            NetError::MessageTooLarge => Some(AlertCode::RecordOverflow),
            NetError::Io(_) | NetError::Closed => None,
        };
        if let Some(code) = code {
            let wire = lock(&self.session).alert(code);
            if let Ok(wire) = wire {
                let _ = self.writer.write_all(&wire).await;
            }
        }
        let _ = self.writer.shutdown().await;
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Channel<R, W> {
    pub(crate) fn new(frames: FrameReader<R>, writer: W, session: Session) -> Self {
        let session = Arc::new(Mutex::new(session));
        Channel {
            reader: ChannelReader { frames, session: session.clone(), messages: MessageDecoder::new(MAX_MESSAGE) },
            writer: ChannelWriter { writer, session },
        }
    }

    /// Runs `f` on the session (suite, server key, peer identity, handshake hash).
    pub fn with_session<T>(&self, f: impl FnOnce(&Session) -> T) -> T {
        f(&lock(&self.reader.session))
    }

    /// Splits into halves that can live in different tasks.
    pub fn split(self) -> (ChannelReader<R>, ChannelWriter<W>) {
        (self.reader, self.writer)
    }

    /// Refuses incoming application messages longer than `max` bytes.
    pub fn set_max_message(&mut self, max: usize) {
        self.reader.set_max_message(max);
    }

    /// See [`ChannelReader::recv`] (cancel-safe).
    pub async fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        self.reader.recv().await
    }

    /// See [`ChannelWriter::send`].
    pub async fn send(&mut self, message: &[u8]) -> Result<(), NetError> {
        self.writer.send(message).await
    }

    /// See [`ChannelWriter::send_parts`].
    pub async fn send_parts(&mut self, messages: &[&[u8]]) -> Result<(), NetError> {
        self.writer.send_parts(messages).await
    }

    /// See [`ChannelWriter::rekey`].
    pub async fn rekey(&mut self) -> Result<(), NetError> {
        self.writer.rekey().await
    }

    /// See [`ChannelWriter::next_timeout`].
    #[must_use]
    pub fn next_timeout(&self) -> Option<Instant> {
        self.writer.next_timeout()
    }

    /// See [`ChannelWriter::handle_timeout`].
    pub async fn handle_timeout(&mut self) -> Result<(), NetError> {
        self.writer.handle_timeout().await
    }

    /// See [`ChannelWriter::close`].
    pub async fn close(&mut self) -> Result<(), NetError> {
        self.writer.close().await
    }

    /// See [`ChannelWriter::refuse`].
    pub async fn refuse(&mut self, code: AlertCode) {
        self.writer.refuse(code).await;
    }

    /// See [`ChannelWriter::abort`].
    pub async fn abort(&mut self, err: &NetError) {
        self.writer.abort(err).await;
    }
}
