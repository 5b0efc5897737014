//! The daemon's end-to-end files: methods `files.send`, `files.get`,
//! `files.list` and `files.cancel`, notifications `file` (an offer) and
//! `transfer` (progress and the end). docs/daemon.md documents them; the
//! tests in [`super::rpc`] check that page against this code.
//!
//! Paths are the daemon user's: the daemon reads and writes files as the
//! user it runs as, and a relative path is relative to its working
//! directory (made absolute when the request is handled).

use std::path::PathBuf;

use cipherline_client::engine::{Command, Event, Reply, TransferInfo, TransferState};
use cipherline_proto::app::Target;
use serde_json::{Value, json};

use super::rpc::{RpcError, invalid, text};

/// A file request parsed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FileCall {
    Send { to: Target, path: PathBuf },
    Get { id: u64, dir: PathBuf },
    List,
    Cancel(String),
}

/// The call for file method `method` (`files.…`) with `params` (an
/// object, or absent).
pub(super) fn call(method: &str, params: &Value) -> Result<FileCall, RpcError> {
    match method {
        "files.send" => {
            let to = match (params.get("to").is_some(), params.get("room").is_some()) {
                (true, false) => Target::User(text(params, "to")?),
                (false, true) => Target::Room(text(params, "room")?),
                _ => return Err(invalid("give exactly one of `to` and `room`")),
            };
            Ok(FileCall::Send { to, path: PathBuf::from(text(params, "path")?) })
        }
        "files.get" => {
            let id = params
                .get("id")
                .and_then(Value::as_u64)
                .ok_or_else(|| invalid("`id` must be the offer's id (a `file` notification's)"))?;
            Ok(FileCall::Get { id, dir: PathBuf::from(text(params, "dir")?) })
        }
        "files.cancel" => Ok(FileCall::Cancel(text(params, "transfer")?)),
        _ => Ok(FileCall::List),
    }
}

/// The engine's command for a file call.
pub(super) fn command(call: FileCall) -> Command {
    match call {
        FileCall::Send { to, path } => Command::SendFile { to, path },
        FileCall::Get { id, dir } => Command::GetFile { id, dir },
        FileCall::List => Command::Files,
        FileCall::Cancel(transfer) => Command::CancelFile(transfer),
    }
}

/// `room` for a room, else `to`.
fn place(target: &Target) -> (&'static str, &str) {
    match target {
        Target::Room(room) => ("room", room),
        Target::User(user) => ("to", user),
    }
}

fn insert(object: &mut Value, key: &str, value: Value) {
    if let Some(object) = object.as_object_mut() {
        object.insert(key.to_owned(), value);
    }
}

fn listed(info: &TransferInfo) -> Value {
    let mut item = json!({
        "transfer": info.transfer,
        "direction": if info.outgoing { "out" } else { "in" },
        "name": info.name,
        "done": info.done,
        "total": info.total,
        "state": info.state.as_str(),
    });
    let (key, value) = place(&info.to);
    insert(&mut item, key, json!(value));
    if let Some(from) = &info.from {
        insert(&mut item, "from", json!(from));
    }
    if let TransferState::Failed { reason, why } = &info.state {
        insert(&mut item, "failure", json!(reason.as_str()));
        insert(&mut item, "reason", json!(why));
    }
    item
}

/// A file command's answer as a JSON-RPC result (`None`: not one).
pub(super) fn result(reply: &Reply) -> Option<Value> {
    match reply {
        Reply::Transfer { transfer } => Some(json!({ "transfer": transfer })),
        Reply::Files(list) => Some(json!({ "transfers": list.iter().map(listed).collect::<Vec<_>>() })),
        _ => None,
    }
}

/// A file event as a notification's method and params (`None`: not one).
pub(super) fn notification(event: &Event) -> Option<(&'static str, Value)> {
    match event {
        Event::FileOffered { id, from, to, name, size, e2e, verified } => {
            let mut params = json!({
                "id": id,
                "from": from,
                "name": name,
                "size": size,
                "e2e": e2e,
                "verified": verified.as_str(),
            });
            let (key, value) = place(to);
            insert(&mut params, key, json!(value));
            Some(("file", params))
        }
        Event::Transfer { transfer, name, done, total, state, path } => {
            let mut params = json!({
                "transfer": transfer,
                "name": name,
                "done": done,
                "total": total,
                "state": state.as_str(),
            });
            if let TransferState::Failed { reason, why } = state {
                insert(&mut params, "failure", json!(reason.as_str()));
                insert(&mut params, "reason", json!(why));
            }
            if let Some(path) = path {
                insert(&mut params, "path", json!(path.to_string_lossy()));
            }
            Some(("transfer", params))
        }
        _ => None,
    }
}

/// A sample answer of each shape, for the doc's tests.
#[cfg(test)]
pub(super) fn sample(call: &FileCall) -> Reply {
    match call {
        FileCall::List => Reply::Files(Vec::new()),
        FileCall::Cancel(_) => Reply::Done,
        FileCall::Send { .. } | FileCall::Get { .. } => Reply::Transfer { transfer: "d1".into() },
    }
}

/// A sample of each notification's shape, for the doc's tests.
#[cfg(test)]
pub(super) fn samples() -> Vec<Event> {
    use cipherline_client::engine::{FailReason, Verified};
    let transfer = |state: TransferState, path: Option<PathBuf>| Event::Transfer {
        transfer: "d1".into(),
        name: "f".into(),
        done: 1,
        total: 2,
        state,
        path,
    };
    let offer = |to: Target| Event::FileOffered {
        id: 1,
        from: "a".into(),
        to,
        name: "f".into(),
        size: 2,
        e2e: true,
        verified: Verified::Known,
    };
    vec![
        offer(Target::User("b".into())),
        offer(Target::Room("r".into())),
        transfer(TransferState::Running, None),
        transfer(TransferState::Done, Some(PathBuf::from("/x/f"))),
        transfer(TransferState::failed(FailReason::ConnectionLost, "x"), None),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::super::rpc::INVALID_PARAMS;
    use super::*;
    use cipherline_client::engine::FailReason;

    #[test]
    fn file_params_are_checked() {
        let code = |m: &str, p: Value| {
            let e = format!("{:?}", call(m, &p).unwrap_err());
            if e.contains(&INVALID_PARAMS.to_string()) { INVALID_PARAMS } else { 0 }
        };
        assert_eq!(code("files.send", json!({ "to": "a", "room": "b", "path": "f" })), INVALID_PARAMS);
        assert_eq!(code("files.send", json!({ "to": "a" })), INVALID_PARAMS);
        assert_eq!(code("files.get", json!({ "id": -1, "dir": "." })), INVALID_PARAMS);
        assert_eq!(code("files.get", json!({ "id": "5", "dir": "." })), INVALID_PARAMS);
        assert_eq!(code("files.cancel", json!({})), INVALID_PARAMS);
        // Ids above 2^53 are kept exact.
        let big = call("files.get", &serde_json::from_str(r#"{"id": 18446744073709551615, "dir": "in"}"#).unwrap());
        assert_eq!(big.unwrap(), FileCall::Get { id: u64::MAX, dir: PathBuf::from("in") });
    }

    #[test]
    fn a_listing_names_the_conversation_and_why_a_transfer_failed() {
        let info = TransferInfo {
            transfer: "d3".into(),
            outgoing: false,
            to: Target::Room("team".into()),
            from: Some("alice".into()),
            name: "a.txt".into(),
            done: 1,
            total: 2,
            state: TransferState::failed(FailReason::Cancelled, "gone"),
            offer: None,
            resumed: 0,
        };
        let v = result(&Reply::Files(vec![info])).unwrap();
        let item = &v["transfers"][0];
        assert_eq!((item["room"].as_str(), item["from"].as_str()), (Some("team"), Some("alice")));
        assert_eq!((item["state"].as_str(), item["reason"].as_str()), (Some("failed"), Some("gone")));
        assert_eq!(item["failure"], "cancelled", "the kind, for bots to act on");
        assert_eq!(item["direction"], "in");
    }
}
