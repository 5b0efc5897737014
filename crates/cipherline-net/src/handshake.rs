//! Both handshakes over a stream, each bounded by one timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherline_proto::crypto::SystemRng;
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::handshake::alert_frame;
use cipherline_proto::handshake::client::{ExpectServerIdentity, VerifyServerKey};
use cipherline_proto::handshake::server::{ExpectClientHello, ServerStep};
use cipherline_proto::{AlertCode, ClientConfig, Frame, ServerConfig, Session, Suite};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout_at;

use crate::{Channel, FrameReader, NetError};

async fn next_frame<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) -> Result<Frame, NetError> {
    reader.read_frame().await?.ok_or(NetError::Closed)
}

/// Sends the plaintext alert for a failed handshake step (best effort: the
/// connection is closing anyway) and returns the error.
async fn fail<W: AsyncWrite + Unpin>(writer: &mut W, err: NetError) -> NetError {
    if let NetError::Protocol(e) = &err
        && let Some(code) = e.alert()
    {
        let _ = writer.write_all(&alert_frame(code)).await;
    }
    if matches!(err, NetError::Timeout(_)) {
        let _ = writer.write_all(&alert_frame(AlertCode::Timeout)).await;
    }
    err
}

/// Runs the server's handshake on an accepted stream. The whole exchange,
/// from ServerIdentity to the client's Finished, must finish within `limit`.
pub async fn accept<R, W>(
    read: R,
    mut write: W,
    config: Arc<ServerConfig>,
    limit: Duration,
) -> Result<Channel<R, W>, NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut reader = FrameReader::new(read);
    let result = timeout_at(deadline, async {
        let mut rng = SystemRng;
        let (state, identity) = ExpectClientHello::new(config)?;
        write.write_all(&identity).await?;
        let hello = next_frame(&mut reader).await?;
        let (mut state, reply) = state.handle_client_hello(&hello, &mut rng, Instant::now())?;
        write.write_all(&reply).await?;
        loop {
            let frame = next_frame(&mut reader).await?;
            match state.handle_frame(&frame, Instant::now())? {
                ServerStep::Continue(next) => state = next,
                ServerStep::Done(session) => return Ok::<Session, NetError>(session),
            }
        }
    })
    .await
    .unwrap_or(Err(NetError::Timeout("waiting for the client's handshake")));
    match result {
        Ok(session) => Ok(Channel::new(reader, write, session)),
        Err(e) => Err(fail(&mut write, e).await),
    }
}

/// A client handshake paused at the trust decision: the server has named its
/// key, nothing secret has been sent yet.
pub struct PendingServer<R, W> {
    reader: FrameReader<R>,
    write: W,
    state: VerifyServerKey,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> PendingServer<R, W> {
    /// The key the server presented: check it before calling
    /// [`PendingServer::trust`]. `None` for a password-only server, which
    /// the password (checked during the handshake) authenticates instead.
    #[must_use]
    pub fn server_key(&self) -> Option<&ServerPublicKey> {
        self.state.server_key()
    }

    /// Whether the handshake runs the password exchange.
    #[must_use]
    pub fn uses_password(&self) -> bool {
        self.state.uses_password()
    }

    /// The suite the handshake will use.
    #[must_use]
    pub fn suite(&self) -> Suite {
        self.state.suite()
    }

    /// Refuses the key: tells the server (handshake_failure) and closes.
    pub async fn refuse(mut self) {
        let _ = self.write.write_all(&alert_frame(AlertCode::HandshakeFailure)).await;
        let _ = self.write.shutdown().await;
    }

    /// Trusts the key and completes the handshake: on success the server has
    /// proven it holds the matching private key. `limit` bounds the rest of
    /// the handshake (the time spent deciding is not counted).
    pub async fn trust(self, limit: Duration) -> Result<Channel<R, W>, NetError> {
        let PendingServer { mut reader, mut write, state } = self;
        let deadline = tokio::time::Instant::now() + limit;
        let result = timeout_at(deadline, async {
            let mut rng = SystemRng;
            let (state, hello) = state.into_client_hello(&mut rng)?;
            write.write_all(&hello).await?;
            let frame = next_frame(&mut reader).await?;
            let state = state.handle_server_hello(&frame, Instant::now())?;
            let frame = next_frame(&mut reader).await?;
            let (session, finish) = state.handle_server_finished(&frame, Instant::now())?;
            write.write_all(&finish).await?;
            Ok::<Session, NetError>(session)
        })
        .await
        .unwrap_or(Err(NetError::Timeout("waiting for the server's handshake")));
        match result {
            Ok(session) => Ok(Channel::new(reader, write, session)),
            Err(e) => Err(fail(&mut write, e).await),
        }
    }
}

/// Starts a client handshake: reads ServerIdentity within `limit`, then
/// pauses for the caller's trust decision.
pub async fn connect<R, W>(
    read: R,
    mut write: W,
    config: Arc<ClientConfig>,
    limit: Duration,
) -> Result<PendingServer<R, W>, NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut reader = FrameReader::new(read);
    let result = timeout_at(deadline, async {
        let frame = next_frame(&mut reader).await?;
        Ok::<VerifyServerKey, NetError>(ExpectServerIdentity::new(config)?.handle_server_identity(&frame)?)
    })
    .await
    .unwrap_or(Err(NetError::Timeout("waiting for the server to identify itself")));
    match result {
        Ok(state) => Ok(PendingServer { reader, write, state }),
        Err(e) => Err(fail(&mut write, e).await),
    }
}
