//! `chat`'s connection to the server, and making it again when it is
//! lost: which failures may pass (so are worth reconnecting over), the
//! backoff between attempts, and one attempt (connect, join the rooms
//! again, ask for what arrived meanwhile).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use cipherline_client::{Client, ClientError, ClientReader};
use cipherline_proto::app::ServerMessage;
use tokio::sync::mpsc;

use crate::client_args::{ClientArgs, Connected};
use crate::error::CliError;

/// What the reader task passes on: a server message, or why reading failed.
pub(crate) type Event = Result<ServerMessage, ClientError>;

/// A live connection: its reader task's messages, and how often to ping.
pub(crate) struct Link {
    pub(crate) events: mpsc::Receiver<Event>,
    pub(crate) keepalive: Duration,
}

/// A connection made again: every room joined again (but those refused,
/// with the server's reason) and what waited asked for.
pub(crate) struct Rejoined {
    pub(crate) client: Client,
    pub(crate) refused: Vec<(String, String)>,
    /// Why this user's end-to-end key packages could not be published
    /// (others need one to start a conversation with it), if they could not.
    pub(crate) key_packages: Option<String>,
}

/// A reconnection attempt under way; it borrows the command line's flags.
pub(crate) type Attempt<'a> = Pin<Box<dyn Future<Output = Result<Rejoined, CliError>> + 'a>>;

// The backoff and which failures may pass are the client engine's, so
// that chat and the engine's front-ends reconnect alike.
pub(crate) use cipherline_client::engine::{FIRST_RETRY, LAST_RETRY, jittered, passing_code};
/// One reconnection attempt (connect, join the rooms, resume) at most.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the server's messages in a task of their own, so that the chat
/// loop can wait on them beside the input; ends at the first error.
pub(crate) fn spawn_reader(mut reader: ClientReader) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let msg = reader.recv().await;
            let stop = msg.is_err();
            if tx.send(msg).await.is_err() || stop {
                break;
            }
        }
    });
    rx
}

/// The next message of a live connection (call only with one).
pub(crate) async fn next_event(link: &mut Option<Link>) -> Option<Event> {
    match link {
        Some(l) => l.events.recv().await,
        None => std::future::pending().await,
    }
}

/// The outcome of the reconnection attempt under way (call only with one).
pub(crate) async fn finish(attempt: &mut Option<Attempt<'_>>) -> Result<Rejoined, CliError> {
    match attempt {
        Some(a) => a.await,
        None => std::future::pending().await,
    }
}

/// Connects again as at first, but never asks on the terminal (the
/// server's key was settled then: a changed one is refused), joins `rooms`
/// again and asks for what arrived meanwhile; all within a time limit.
pub(crate) async fn reconnect(args: &ClientArgs, rooms: Vec<String>) -> Result<Rejoined, CliError> {
    let attempt = async {
        let Connected { mut client, e2e, .. } = args.connect(false).await?;
        let mut refused = Vec::new();
        for room in rooms {
            match client.join(&room).await {
                Ok(()) => {}
                // One room refused (a limit, say) is no reason to stop.
                Err(ClientError::Refused { code, text }) if !code.is_fatal() => refused.push((room, text)),
                Err(e) => return Err(e.into()),
            }
        }
        let mut key_packages = None;
        if let Some(e2e) = &e2e
            && let Err(e) = e2e.publish_key_packages(&mut client).await
        {
            key_packages = Some(e.to_string());
        }
        client.resume(0).await?;
        Ok(Rejoined { client, refused, key_packages })
    };
    match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(CliError::Client(ClientError::Timeout("reconnecting"))),
    }
}

/// Whether reconnecting may get past `e`: the network, a server not up
/// (yet), busy or ending sessions. Never a key, password or name problem,
/// a peer breaking the protocol, or a local file.
pub(crate) fn passing(e: &CliError) -> bool {
    match e {
        CliError::Client(e) => cipherline_client::engine::passing(e),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cipherline_net::NetError;
    use cipherline_proto::app::ErrorCode;

    fn refused(code: ErrorCode) -> CliError {
        CliError::Client(ClientError::Refused { code, text: String::new() })
    }

    #[test]
    fn only_failures_that_may_pass_are_reconnected_over() {
        let io = |kind| CliError::Client(ClientError::Net(NetError::Io(std::io::Error::from(kind))));
        assert!(passing(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(passing(&CliError::Client(ClientError::Connect {
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        })));
        assert!(passing(&CliError::Client(ClientError::Net(NetError::Closed))));
        let truncated = NetError::Protocol(cipherline_proto::Error::Truncated);
        assert!(passing(&CliError::Client(ClientError::Net(truncated))));
        for code in [ErrorCode::ShuttingDown, ErrorCode::IdleTimeout, ErrorCode::TooSlow, ErrorCode::ServerFull] {
            assert!(passing(&refused(code)), "{code:?}");
        }
        // Final: the name, a request the server will refuse again, trust.
        for code in [ErrorCode::NameTaken, ErrorCode::InvalidName, ErrorCode::BadRequest, ErrorCode::MessageTooLarge] {
            assert!(!passing(&refused(code)), "{code:?}");
        }
        assert!(!passing(&CliError::Client(ClientError::Untrusted("changed".into()))));
        let auth = NetError::Protocol(cipherline_proto::Error::AuthenticationFailed(
            cipherline_proto::error::AuthFailure::Password,
        ));
        assert!(!passing(&CliError::Client(ClientError::Net(auth))));
        assert!(!passing(&CliError::usage("bad", "flag")));
    }

    #[test]
    fn the_jitter_is_small() {
        for _ in 0..100 {
            let d = jittered(FIRST_RETRY);
            assert!(d >= FIRST_RETRY && d < FIRST_RETRY + Duration::from_millis(250));
        }
    }
}
