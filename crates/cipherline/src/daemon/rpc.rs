//! The daemon's JSON-RPC 2.0 schema: requests parsed into calls, calls
//! run on the engine, replies and events written as JSON. docs/daemon.md
//! documents it; the tests below check that page against [`METHODS`],
//! [`NOTIFICATIONS`] and the parser, so the two cannot drift.

use cipherline_client::ClientError;
use cipherline_client::engine::{Command, ConnectionState, EngineHandle, Event, Reply};
use cipherline_proto::app::Target;
use serde_json::{Value, json};

/// The methods a request may name.
pub const METHODS: &[&str] = &[
    "send",
    "join",
    "leave",
    "status",
    "session",
    "rekey",
    // People and rooms (people.rs).
    "history",
    "conversations",
    "members",
    "contacts",
    "whois",
    "verify",
    "trust",
    "create",
    "invite",
    "kick",
    // Files (files.rs).
    "files.send",
    "files.get",
    "files.list",
    "files.cancel",
];
/// The notifications the daemon writes.
pub const NOTIFICATIONS: &[&str] =
    &["message", "delivered", "membership", "key_changed", "expired", "group", "connection", "file", "transfer"];

/// JSON-RPC 2.0's codes.
pub(super) const PARSE_ERROR: i64 = -32700;
pub(super) const INVALID_REQUEST: i64 = -32600;
pub(super) const METHOD_NOT_FOUND: i64 = -32601;
pub(super) const INVALID_PARAMS: i64 = -32602;
/// Ours: the server refused the request (its reason in the message).
pub(super) const REFUSED: i64 = -32000;
/// Ours: not connected now (the daemon is reconnecting or stopped).
pub(super) const NOT_CONNECTED: i64 = -32001;
/// Ours: end-to-end encryption failed or is not possible.
pub(super) const END_TO_END: i64 = -32002;
/// Ours: anything else that failed.
pub(super) const FAILED: i64 = -32003;

/// A request parsed: what to run.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Call {
    Send { to: Target, text: String },
    Join(String),
    Leave(String),
    Status,
    Session,
    Rekey,
    People(Command),
    Files(super::files::FileCall),
}

/// A JSON-RPC error, with the request's id (`null` if unknown).
#[derive(Debug)]
pub(super) struct RpcError {
    code: i64,
    message: String,
}

/// The longest error message written, in bytes: the client library's
/// messages name what failed, and some quote a name the request gave,
/// which may be long (escaped, up to eight times longer).
const MAX_ERROR_MESSAGE: usize = 512;

impl RpcError {
    pub(super) fn new(code: i64, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE {
            let mut end = MAX_ERROR_MESSAGE;
            while !message.is_char_boundary(end) {
                end = end.saturating_sub(1);
            }
            message.truncate(end);
            message.push('…');
        }
        RpcError { code, message }
    }
}

/// Invalid params: `invalid params: ` and what is wrong.
pub(super) fn invalid(message: impl Into<String>) -> RpcError {
    RpcError::new(INVALID_PARAMS, format!("invalid params: {}", message.into()))
}

/// The param `key`, which must be a non-empty string.
pub(super) fn text(params: &Value, key: &str) -> Result<String, RpcError> {
    match params.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(invalid(format!("`{key}` must be a non-empty string"))),
    }
}

/// Parses one request line: its id (`None` for a notification, which is
/// not answered) and the call, or the error to answer with.
pub(super) fn parse(line: &[u8]) -> (Option<Value>, Result<Call, RpcError>) {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(_) => return (Some(Value::Null), Err(RpcError::new(PARSE_ERROR, "parse error: not JSON"))),
    };
    let Some(object) = value.as_object() else {
        return (Some(Value::Null), Err(RpcError::new(INVALID_REQUEST, "invalid request: not an object")));
    };
    let id = object.get("id").cloned();
    // A number that is not an integer of 64 bits would not be echoed as it
    // was written (1.0, 1e3, 2^64 come back otherwise): refused instead.
    if let Some(id) = &id
        && !(id.is_string() || id.is_u64() || id.is_i64() || id.is_null())
    {
        return (
            Some(Value::Null),
            Err(RpcError::new(INVALID_REQUEST, "invalid request: `id` must be a string, an integer or null")),
        );
    }
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return (
            id.or(Some(Value::Null)),
            Err(RpcError::new(INVALID_REQUEST, "invalid request: jsonrpc must be \"2.0\"")),
        );
    }
    let Some(method) = object.get("method").and_then(Value::as_str) else {
        return (id.or(Some(Value::Null)), Err(RpcError::new(INVALID_REQUEST, "invalid request: no method")));
    };
    let params = object.get("params").cloned().unwrap_or(Value::Null);
    (id, call(method, &params))
}

/// The call for `method` with `params` (an object, or absent).
pub(super) fn call(method: &str, params: &Value) -> Result<Call, RpcError> {
    if !METHODS.contains(&method) {
        return Err(RpcError::new(METHOD_NOT_FOUND, "method not found"));
    }
    if !(params.is_object() || params.is_null()) {
        return Err(invalid("params must be an object"));
    }
    if super::people::METHODS.contains(&method) {
        return super::people::command(method, params).map(Call::People);
    }
    match method {
        "send" => {
            let to = match (params.get("to").is_some(), params.get("room").is_some()) {
                (true, false) => Target::User(text(params, "to")?),
                (false, true) => Target::Room(text(params, "room")?),
                _ => return Err(invalid("give exactly one of `to` and `room`")),
            };
            Ok(Call::Send { to, text: text(params, "text")? })
        }
        "join" => Ok(Call::Join(text(params, "room")?)),
        "leave" => Ok(Call::Leave(text(params, "room")?)),
        "session" => Ok(Call::Session),
        "rekey" => Ok(Call::Rekey),
        m if m.starts_with("files.") => Ok(Call::Files(super::files::call(m, params)?)),
        _ => Ok(Call::Status),
    }
}

/// Runs a call on the engine: the result, or the error to answer with.
pub(super) async fn run_call(handle: &EngineHandle, call: Call) -> Result<Value, RpcError> {
    let reply = match call {
        Call::Send { to: Target::User(user), text } => handle.send_direct(&user, &text).await,
        Call::Send { to: Target::Room(room), text } => handle.send_room(&room, &text).await,
        Call::Join(room) => handle.join(&room).await,
        Call::Leave(room) => handle.leave(&room).await,
        Call::Status => handle.status().await,
        Call::Session => handle.run(Command::Session).await,
        Call::Rekey => handle.run(Command::Rekey).await,
        Call::People(command) => handle.run(command).await,
        Call::Files(c) => handle.run(super::files::command(c)).await,
    };
    match reply {
        Ok(reply) => Ok(result(&reply)),
        // Error texts name what failed, never key material or message text
        // (the client library's contract); a server's text is escaped.
        Err(e @ ClientError::Refused { .. }) => Err(RpcError::new(REFUSED, e.to_string())),
        Err(e @ ClientError::Engine(_)) => Err(RpcError::new(NOT_CONNECTED, e.to_string())),
        Err(e @ ClientError::EndToEnd(_)) => Err(RpcError::new(END_TO_END, e.to_string())),
        Err(e) => Err(RpcError::new(FAILED, e.to_string())),
    }
}

/// A command's answer as a JSON-RPC result.
pub(super) fn result(reply: &Reply) -> Value {
    match reply {
        Reply::Sent { id, e2e } => json!({ "id": id, "e2e": e2e }),
        Reply::Done => json!({}),
        Reply::Status(s) => json!({ "name": s.name, "connected": s.connected, "rooms": s.rooms, "e2e": s.e2e }),
        r @ (Reply::History(_)
        | Reply::Conversations(_)
        | Reply::Members(_)
        | Reply::Contacts(_)
        | Reply::Fingerprint { .. }
        | Reply::SafetyCode { .. }) => super::people::result(r).unwrap_or_default(),
        Reply::Transfer { .. } | Reply::Files(_) => super::files::result(reply).unwrap_or_default(),
        Reply::Session(s) => json!({
            "name": s.name,
            "suite": s.suite,
            "server_fingerprint": s.server_fingerprint,
            "server_short": s.server_short,
            "handshake_hash": s.handshake_hash,
        }),
        // Lookups of chat's and listen's, and one-shot answers of send's,
        // not methods of the daemon's.
        Reply::KeyInfo(_)
        | Reply::RoomInfo(_)
        | Reply::Download(_)
        | Reply::Received(_)
        | Reply::Prepared(_)
        | Reply::Acked(_) => json!({}),
    }
}

/// The response line for request `id`.
pub(super) fn response(id: Value, result: Result<Value, RpcError>) -> String {
    response_value(id, result).to_string()
}

/// The response for request `id`, not yet written as a line.
pub(super) fn response_value(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(e) => json!({ "jsonrpc": "2.0", "id": id, "error": { "code": e.code, "message": e.message } }),
    }
}

/// The notification line for an engine event.
pub(super) fn notification(event: &Event) -> String {
    let (method, params) = match event {
        Event::Message(m) => {
            let mut params = json!({
                "id": m.id,
                "from": m.from,
                "text": m.text,
                "e2e": m.e2e,
                "verified": m.verified.as_str(),
                "timestamp": m.timestamp_ms,
                "sent": m.sent_ms,
                "signed": m.signed,
            });
            let (key, value) = match &m.to {
                Target::Room(room) => ("room", room),
                Target::User(user) => ("to", user),
            };
            if let Some(object) = params.as_object_mut() {
                object.insert(key.to_owned(), json!(value));
            }
            ("message", params)
        }
        Event::Delivered { id, by } => ("delivered", json!({ "id": id, "by": by })),
        Event::Membership { room, name, joined } => {
            ("membership", json!({ "room": room, "name": name, "joined": joined }))
        }
        Event::KeyChanged { id, name } => ("key_changed", json!({ "id": id, "name": name })),
        Event::Expired { id, to } => ("expired", json!({ "id": id, "to": to })),
        Event::Group { id, text, .. } => ("group", json!({ "id": id, "text": text })),
        // (An upload's facts are not passed on: see daemon/mod.rs.)
        Event::FileOffered { .. } | Event::Transfer { .. } | Event::Upload(_) | Event::Receiver { .. } => {
            super::files::notification(event).unwrap_or(("transfer", Value::Null))
        }
        Event::Connection(state) => (
            "connection",
            match state {
                ConnectionState::Connecting => json!({ "state": "connecting" }),
                ConnectionState::Connected { name } => json!({ "state": "connected", "name": name }),
                ConnectionState::Reconnecting { reason, retry_in } => {
                    json!({ "state": "reconnecting", "reason": reason, "retry_in": retry_in.as_secs_f64() })
                }
                ConnectionState::Stopped { reason } => json!({ "state": "stopped", "reason": reason }),
            },
        ),
    };
    debug_assert!(NOTIFICATIONS.contains(&method), "{method} is missing from NOTIFICATIONS");
    json!({ "jsonrpc": "2.0", "method": method, "params": params }).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const DOC: &str = include_str!("../../../../docs/daemon.md");

    /// Every ```json block of docs/daemon.md, each line one object.
    fn examples() -> Vec<Value> {
        let mut out = Vec::new();
        let mut inside = false;
        for line in DOC.lines() {
            match line.trim() {
                "```json" => inside = true,
                "```" => inside = false,
                l if inside && !l.is_empty() => {
                    let l = l.trim_start_matches("--> ").trim_start_matches("<-- ");
                    out.push(serde_json::from_str(l).unwrap_or_else(|e| panic!("docs/daemon.md: {l}: {e}")));
                }
                _ => {}
            }
        }
        out
    }

    /// The keys of an object, sorted.
    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        k.sort();
        k
    }

    #[test]
    fn the_doc_names_exactly_the_methods_and_notifications() {
        let examples = examples();
        // Requests shown answered (not those shown refused as unknown).
        let requests: std::collections::BTreeSet<&str> = examples
            .windows(2)
            .filter(|p| p[0].get("id").is_some() && p[1].pointer("/error/code") != Some(&json!(METHOD_NOT_FOUND)))
            .filter_map(|p| p[0].get("method").and_then(Value::as_str))
            .collect();
        let notifications: std::collections::BTreeSet<&str> = examples
            .iter()
            .filter(|v| v.get("id").is_none())
            .filter_map(|v| v.get("method").and_then(Value::as_str))
            .collect();
        let methods: std::collections::BTreeSet<&str> = METHODS.iter().copied().collect();
        let notes: std::collections::BTreeSet<&str> = NOTIFICATIONS.iter().copied().collect();
        assert_eq!(requests, methods, "methods with an example in docs/daemon.md");
        assert_eq!(notifications, notes, "notifications with an example in docs/daemon.md");
        for m in METHODS.iter().chain(NOTIFICATIONS) {
            assert!(DOC.contains(&format!("### `{m}`")), "docs/daemon.md has no section for {m}");
        }
    }

    /// Each request in the doc, and the response after it: the request
    /// parses as the response says (a call, or the error code and message),
    /// and a result has the keys the daemon's result for that method has.
    #[test]
    fn every_request_in_the_doc_gets_the_response_shown() {
        use cipherline_client::engine::Status;
        let examples = examples();
        let mut checked = 0;
        for pair in examples.windows(2) {
            let (request, answer) = (&pair[0], &pair[1]);
            if request.get("method").is_none() || request.get("id").is_none() {
                continue;
            }
            let line = request.to_string();
            let (id, call) = parse(line.as_bytes());
            assert_eq!(id.as_ref(), request.get("id"), "{line}");
            assert_eq!(answer.get("id"), request.get("id"), "docs/daemon.md: no response after {line}");
            match (call, answer.get("error")) {
                (Err(e), Some(error)) => {
                    assert_eq!(error["code"], e.code, "{line}");
                    assert_eq!(error["message"], e.message.as_str(), "{line}");
                }
                (Ok(call), None) => {
                    let sample = match call {
                        Call::Send { .. } => Reply::Sent { id: 1, e2e: true },
                        Call::Join(_) | Call::Leave(_) | Call::Rekey => Reply::Done,
                        Call::Session => Reply::Session(cipherline_client::engine::SessionSummary {
                            name: "a".into(),
                            suite: "X25519+X25519+AES-256-GCM".into(),
                            server_fingerprint: None,
                            server_short: None,
                            handshake_hash: "00".into(),
                            stored: true,
                        }),
                        Call::Status => {
                            Reply::Status(Status { name: "a".into(), connected: true, rooms: Vec::new(), e2e: true })
                        }
                        Call::People(command) => super::super::people::sample(&command),
                        Call::Files(c) => super::super::files::sample(&c),
                    };
                    assert_eq!(keys(&answer["result"]), keys(&result(&sample)), "{line}");
                }
                (call, error) => panic!("docs/daemon.md: {line} gives {call:?}, the doc shows {error:?}"),
            }
            checked += 1;
        }
        assert!(checked > METHODS.len(), "{checked} requests checked");
        // The parse error shown is what the daemon answers to a line not JSON.
        let parse_error = examples.iter().find(|v| v.pointer("/error/code") == Some(&json!(PARSE_ERROR))).unwrap();
        let e = parse(b"{nope").1.unwrap_err();
        assert_eq!(parse_error["error"]["message"], e.message.as_str());
    }

    #[test]
    fn every_notification_in_the_doc_has_the_shape_the_daemon_writes() {
        use cipherline_client::engine::{Message, Verified};
        let mut written = vec![
            notification(&Event::Message(Message {
                id: 1,
                from: "a".into(),
                to: Target::Room("r".into()),
                text: "t".into(),
                e2e: false,
                verified: Verified::Known,
                new_key: None,
                timestamp_ms: 1,
                sent_ms: Some(1),
                signed: true,
            })),
            notification(&Event::Message(Message {
                id: 1,
                from: "a".into(),
                to: Target::User("b".into()),
                text: "t".into(),
                e2e: true,
                verified: Verified::New,
                new_key: None,
                timestamp_ms: 1,
                sent_ms: None,
                signed: false,
            })),
            notification(&Event::Delivered { id: 1, by: "b".into() }),
            notification(&Event::Membership { room: "r".into(), name: "b".into(), joined: true }),
            notification(&Event::KeyChanged { id: 1, name: "b".into() }),
            notification(&Event::Expired { id: 1, to: "b".into() }),
            notification(&Event::Group {
                id: 1,
                text: "x".into(),
                change: cipherline_client::engine::GroupChange::Notice,
            }),
            notification(&Event::Connection(ConnectionState::Connecting)),
            notification(&Event::Connection(ConnectionState::Connected { name: "a".into() })),
            notification(&Event::Connection(ConnectionState::Reconnecting {
                reason: "x".into(),
                retry_in: std::time::Duration::from_secs(1),
            })),
            notification(&Event::Connection(ConnectionState::Stopped { reason: "x".into() })),
        ];
        written.extend(super::super::files::samples().iter().map(notification));
        let shape_of = |v: &Value| (v["method"].as_str().unwrap().to_owned(), keys(&v["params"]));
        let shapes: Vec<_> = written.iter().map(|l| shape_of(&serde_json::from_str(l).unwrap())).collect();
        for example in examples() {
            if example.get("id").is_none() && example.get("method").is_some() {
                let shape = shape_of(&example);
                assert!(shapes.contains(&shape), "docs/daemon.md: {example} is not what the daemon writes");
            }
        }
    }

    #[test]
    fn a_session_has_every_field_and_null_fingerprints_without_a_server_key() {
        use cipherline_client::engine::SessionSummary;
        let summary = |fingerprint: Option<&str>, short: Option<&str>| {
            result(&Reply::Session(SessionSummary {
                name: "bot".into(),
                suite: "PASSWORD-ONLY+X25519+AES-256-GCM".into(),
                server_fingerprint: fingerprint.map(str::to_owned),
                server_short: short.map(str::to_owned),
                handshake_hash: "ab".repeat(32),
                stored: true,
            }))
        };
        let keyed = summary(Some("SHA256:00"), Some("0000"));
        assert_eq!(
            keyed,
            json!({ "name": "bot", "suite": "PASSWORD-ONLY+X25519+AES-256-GCM", "server_fingerprint": "SHA256:00",
                    "server_short": "0000", "handshake_hash": "ab".repeat(32) })
        );
        let password_only = summary(None, None);
        assert_eq!(password_only["server_fingerprint"], Value::Null);
        assert_eq!(password_only["server_short"], Value::Null);
        assert_eq!(parse(br#"{"jsonrpc":"2.0","id":1,"method":"session"}"#).1.unwrap(), Call::Session);
        assert_eq!(parse(br#"{"jsonrpc":"2.0","id":1,"method":"rekey"}"#).1.unwrap(), Call::Rekey);
    }

    #[test]
    fn bad_requests_get_the_json_rpc_codes() {
        let code = |line: &str| parse(line.as_bytes()).1.unwrap_err().code;
        assert_eq!(code("{nope"), PARSE_ERROR);
        assert_eq!(code("[1]"), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"1.0","id":1,"method":"status"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"fly"}"#), METHOD_NOT_FOUND);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"send","params":{"to":"a","room":"b","text":"x"}}"#),
            INVALID_PARAMS
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"send","params":{"to":"a"}}"#), INVALID_PARAMS);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"join","params":[1]}"#), INVALID_PARAMS);
        // An error quoting a long name is cut short, on a character boundary.
        let long = RpcError::new(FAILED, format!("no key for {}", "é".repeat(10_000)));
        assert!(long.message.len() <= MAX_ERROR_MESSAGE + '…'.len_utf8() && long.message.ends_with('…'));
        // Ids the answer could not echo exactly are refused (with id null).
        for id in ["1.5", "1e3", "18446744073709551616", "{}", "[1]", "true"] {
            let (answer_id, call) = parse(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"status"}}"#).as_bytes());
            assert_eq!(answer_id, Some(Value::Null), "{id}");
            assert_eq!(call.unwrap_err().code, INVALID_REQUEST, "{id}");
        }
        for id in ["\"x\"", "-1", "18446744073709551615", "-9223372036854775808", "null"] {
            let (answer_id, call) = parse(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"status"}}"#).as_bytes());
            assert_eq!(answer_id.unwrap().to_string(), id);
            assert!(call.is_ok(), "{id}");
        }
    }
}
