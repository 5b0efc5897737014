//! Which failures of a connection may pass, in the command line's error
//! type: the engine's judgement ([`cipherline_client::engine::passing`])
//! for the front-ends on it and for `listen --reconnect`.

use crate::error::CliError;

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
    use cipherline_client::ClientError;
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
}
