//! The daemon's methods for people and rooms (docs/daemon.md): `history`,
//! `conversations`, `members`, `contacts`, `whois`, `verify`, `trust`,
//! `create`, `invite`, `kick`. Their params parsed into engine commands,
//! their replies written as JSON; [`super::rpc`] dispatches to them and
//! its tests check them against the page.

use cipherline_client::engine::{Command, HistoryEntry, MAX_HISTORY, Reply};
use cipherline_proto::app::{RoomKind, Target};
use serde_json::{Map, Value, json};

use super::rpc::{RpcError, invalid, text};

/// The methods of this module.
pub const METHODS: &[&str] =
    &["history", "conversations", "members", "contacts", "whois", "verify", "trust", "create", "invite", "kick"];

/// How many history entries a `history` without `limit` answers.
pub const DEFAULT_HISTORY: u32 = 50;
/// The most users one `invite` or `kick` names.
const MAX_USERS: usize = 64;

/// The engine command for `method` (one of [`METHODS`]) with `params`
/// (an object, or null).
pub(super) fn command(method: &str, params: &Value) -> Result<Command, RpcError> {
    let users = || -> Result<Vec<String>, RpcError> {
        let bad = || invalid(format!("`users` must be a list of 1 to {MAX_USERS} non-empty strings"));
        let list = params.get("users").and_then(Value::as_array).ok_or_else(bad)?;
        if list.is_empty() || list.len() > MAX_USERS {
            return Err(bad());
        }
        list.iter().map(|u| u.as_str().filter(|s| !s.is_empty()).map(str::to_owned).ok_or_else(bad)).collect()
    };
    Ok(match method {
        "history" => {
            let conversation = match (params.get("room").is_some(), params.get("user").is_some()) {
                (true, false) => Target::Room(text(params, "room")?),
                (false, true) => Target::User(text(params, "user")?),
                _ => return Err(invalid("give exactly one of `room` and `user`")),
            };
            let before = match params.get("before") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| invalid("`before` must be a message id"))?),
            };
            let limit = match params.get("limit") {
                None | Some(Value::Null) => DEFAULT_HISTORY,
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=MAX_HISTORY).contains(n))
                    .ok_or_else(|| invalid(format!("`limit` must be 1 to {MAX_HISTORY}")))?,
            };
            Command::History { conversation, before, limit }
        }
        "conversations" => Command::Conversations,
        "members" => Command::Members(text(params, "room")?),
        "contacts" => Command::Contacts,
        "whois" => Command::Whois(text(params, "user")?),
        "verify" => {
            let confirm = match params.get("confirm") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid("`confirm` must be true or false")),
            };
            Command::Verify { user: text(params, "user")?, confirm }
        }
        "trust" => Command::Trust(text(params, "user")?),
        "create" => {
            let kind = match params.get("kind").map(Value::as_str) {
                None | Some(Some("invite")) => RoomKind::Invite,
                Some(Some("public")) => RoomKind::Public,
                Some(Some("open")) => RoomKind::Open,
                Some(_) => return Err(invalid("`kind` must be \"invite\", \"public\" or \"open\"")),
            };
            Command::Create { room: text(params, "room")?, kind }
        }
        "invite" => Command::Invite { room: text(params, "room")?, users: users()? },
        "kick" => Command::Kick { room: text(params, "room")?, users: users()? },
        _ => return Err(RpcError::new(super::rpc::METHOD_NOT_FOUND, "method not found")),
    })
}

/// `{"room": R}` or `{"to"/"user": U}` merged into `object`.
fn put_target(object: &mut Map<String, Value>, target: &Target, user_key: &str) {
    let (key, value) = match target {
        Target::Room(room) => ("room", room),
        Target::User(user) => (user_key, user),
    };
    object.insert(key.to_owned(), json!(value));
}

/// A history entry as JSON: the shape of a `message` notification, and
/// `outgoing`.
fn entry(e: &HistoryEntry) -> Value {
    let mut object = Map::new();
    object.insert("id".into(), json!(e.id));
    object.insert("from".into(), json!(e.from));
    put_target(&mut object, &e.to, "to");
    object.insert("text".into(), json!(e.text));
    object.insert("e2e".into(), json!(e.e2e));
    object.insert("verified".into(), json!(e.verified.as_str()));
    object.insert("timestamp".into(), json!(e.timestamp_ms));
    object.insert("outgoing".into(), json!(e.outgoing));
    object.insert("signed".into(), json!(e.signed));
    Value::Object(object)
}

/// The result for one of this module's replies; `None` for another.
pub(super) fn result(reply: &Reply) -> Option<Value> {
    Some(match reply {
        Reply::History(entries) => json!({ "messages": entries.iter().map(entry).collect::<Vec<_>>() }),
        Reply::Conversations(list) => {
            let list: Vec<Value> = list
                .iter()
                .map(|c| {
                    let mut object = Map::new();
                    put_target(&mut object, &c.target, "user");
                    object.insert("e2e".into(), json!(c.e2e));
                    object.insert("last_timestamp".into(), json!(c.last_timestamp_ms));
                    Value::Object(object)
                })
                .collect();
            json!({ "conversations": list })
        }
        Reply::Members(list) => {
            let list: Vec<Value> = list.iter().map(|m| json!({ "name": m.name, "key": m.key.as_str() })).collect();
            json!({ "members": list })
        }
        Reply::Contacts(list) => {
            let list: Vec<Value> = list
                .iter()
                .map(|c| json!({ "name": c.name, "fingerprint": c.fingerprint, "verified": c.verified }))
                .collect();
            json!({ "contacts": list })
        }
        Reply::Fingerprint { name, fingerprint } => json!({ "name": name, "fingerprint": fingerprint }),
        Reply::SafetyCode { user, code } => json!({ "user": user, "code": code }),
        _ => return None,
    })
}

/// A reply of the engine's kind for `command`, for checking the doc's
/// results' keys.
#[cfg(test)]
pub(super) fn sample(command: &Command) -> Reply {
    use cipherline_client::engine::{Contact, ConversationSummary, KeyState, Member};
    match command {
        Command::History { .. } => Reply::History(Vec::new()),
        Command::Conversations => Reply::Conversations(vec![ConversationSummary {
            target: Target::Room("r".into()),
            e2e: true,
            last_timestamp_ms: None,
        }]),
        Command::Members(_) => {
            Reply::Members(vec![Member { name: "a".into(), key: KeyState::Known, fingerprint: None }])
        }
        Command::Contacts => {
            Reply::Contacts(vec![Contact { name: "a".into(), fingerprint: "SHA256:00".into(), verified: false }])
        }
        Command::Whois(name) => Reply::Fingerprint { name: name.clone(), fingerprint: "SHA256:00".into() },
        Command::Verify { user, confirm: false } => Reply::SafetyCode { user: user.clone(), code: "1".into() },
        _ => Reply::Done,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use cipherline_client::engine::Verified;

    #[test]
    fn params_become_the_engine_commands() {
        let c = |m: &str, p: Value| command(m, &p);
        assert_eq!(
            c("history", json!({ "user": "bob", "before": 7, "limit": 20 })).unwrap(),
            Command::History { conversation: Target::User("bob".into()), before: Some(7), limit: 20 }
        );
        assert_eq!(
            c("history", json!({ "room": "dev" })).unwrap(),
            Command::History { conversation: Target::Room("dev".into()), before: None, limit: DEFAULT_HISTORY }
        );
        // Big ids (above 2^53) arrive exact.
        let big = json!({ "room": "dev", "before": u64::MAX });
        assert!(matches!(c("history", big).unwrap(), Command::History { before: Some(u64::MAX), .. }));
        assert_eq!(
            c("create", json!({ "room": "r" })).unwrap(),
            Command::Create { room: "r".into(), kind: RoomKind::Invite }
        );
        assert_eq!(
            c("create", json!({ "room": "r", "kind": "open" })).unwrap(),
            Command::Create { room: "r".into(), kind: RoomKind::Open }
        );
        assert_eq!(
            c("verify", json!({ "user": "bob", "confirm": true })).unwrap(),
            Command::Verify { user: "bob".into(), confirm: true }
        );
        assert_eq!(
            c("kick", json!({ "room": "r", "users": ["a", "b"] })).unwrap(),
            Command::Kick { room: "r".into(), users: vec!["a".into(), "b".into()] }
        );
    }

    #[test]
    fn every_method_here_is_one_the_parser_knows() {
        for m in METHODS {
            assert!(super::super::rpc::METHODS.contains(m), "{m} is missing from rpc::METHODS");
        }
        for m in METHODS {
            assert!(command(m, &json!({})).map_or_else(|e| !format!("{e:?}").contains("not found"), |_| true), "{m}");
        }
    }

    #[test]
    fn bad_params_are_refused() {
        let bad = |m: &str, p: Value| format!("{:?}", command(m, &p).unwrap_err());
        assert!(bad("history", json!({ "room": "a", "user": "b" })).contains("exactly one"));
        assert!(bad("history", json!({ "room": "a", "limit": 0 })).contains("limit"));
        assert!(bad("history", json!({ "room": "a", "limit": 501 })).contains("limit"));
        assert!(bad("history", json!({ "room": "a", "before": -1 })).contains("before"));
        assert!(bad("create", json!({ "room": "a", "kind": "secret" })).contains("kind"));
        assert!(bad("invite", json!({ "room": "a", "users": [] })).contains("users"));
        assert!(bad("invite", json!({ "room": "a", "users": [""] })).contains("users"));
        assert!(bad("invite", json!({ "room": "a", "users": vec!["u"; MAX_USERS + 1] })).contains("users"));
        assert!(bad("verify", json!({ "user": "a", "confirm": "yes" })).contains("confirm"));
        assert!(bad("whois", json!({})).contains("user"));
    }

    #[test]
    fn history_entries_have_the_shape_of_message_notifications() {
        let e = HistoryEntry {
            id: u64::MAX,
            from: "a".into(),
            to: Target::User("b".into()),
            text: "t".into(),
            e2e: true,
            verified: Verified::New,
            timestamp_ms: 5,
            outgoing: false,
            signed: false,
        };
        let v = result(&Reply::History(vec![e])).unwrap();
        assert_eq!(v["messages"][0]["id"].as_u64(), Some(u64::MAX), "ids stay exact numbers");
        assert_eq!(v["messages"][0]["to"], "b");
        assert_eq!(v["messages"][0]["verified"], "new");
        assert_eq!(v["messages"][0]["signed"], false, "as a message notification says it");
        assert!(result(&Reply::Done).is_none());
    }
}
