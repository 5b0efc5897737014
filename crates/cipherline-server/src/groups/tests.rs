//! The commit authorization rules, without a server.

use super::*;

fn room(kind: GroupKind) -> Record {
    Record {
        kind,
        room: Some("team".into()),
        epoch: 3,
        admins: ["alice".to_owned()].into(),
        members: ["alice".to_owned(), "bob".to_owned()].into(),
        group_info: None,
    }
}

fn commit(invited: &[&str], removed: &[&str], external: bool) -> CommitRequest {
    CommitRequest {
        request: 1,
        group_id: vec![1],
        epoch: 3,
        external,
        commit: vec![0],
        welcome: (!invited.is_empty() && !external).then(|| vec![9]),
        group_info: Some(vec![7]),
        invited: invited.iter().map(|s| (*s).to_owned()).collect(),
        removed: removed.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn code(r: Result<Record, Refusal>) -> ErrorCode {
    r.unwrap_err().0
}

const ANYONE: fn(&str) -> bool = |_| true;

#[test]
fn admins_invite_into_invite_rooms_and_any_member_into_public_ones() {
    let rec = room(GroupKind::Invite);
    let next = apply(&rec, "Alice", &commit(&["Carol"], &[], false), 32, ANYONE).unwrap();
    assert_eq!(next.members.iter().map(String::as_str).collect::<Vec<_>>(), ["alice", "bob", "carol"]);
    assert_eq!((next.epoch, next.group_info), (4, Some((4, vec![7]))));
    assert_eq!(code(apply(&rec, "bob", &commit(&["carol"], &[], false), 32, ANYONE)), ErrorCode::NotAllowed);
    let public = room(GroupKind::Public);
    assert!(apply(&public, "bob", &commit(&["carol"], &[], false), 32, ANYONE).is_ok());
    // Only users with a stored queue, and not members already.
    assert_eq!(code(apply(&rec, "alice", &commit(&["carol"], &[], false), 32, |_| false)), ErrorCode::NotAllowed);
    assert_eq!(code(apply(&rec, "alice", &commit(&["bob"], &[], false), 32, ANYONE)), ErrorCode::NotAllowed);
    // A non-member cannot commit at all.
    assert_eq!(code(apply(&rec, "mallory", &commit(&[], &[], false), 32, ANYONE)), ErrorCode::NotAllowed);
}

#[test]
fn removing_a_member_needs_an_admin_unless_it_left_or_is_the_sender() {
    let rec = room(GroupKind::Public);
    assert_eq!(code(apply(&rec, "bob", &commit(&[], &["alice"], false), 32, ANYONE)), ErrorCode::NotAllowed);
    let next = apply(&rec, "alice", &commit(&[], &["bob"], false), 32, ANYONE).unwrap();
    assert!(!next.is_member("bob"));
    assert!(apply(&rec, "bob", &commit(&[], &["bob"], false), 32, ANYONE).is_ok(), "one may remove oneself");
    // Carol left (no longer a member at the relay): anyone may commit her removal.
    assert!(apply(&rec, "bob", &commit(&[], &["carol"], false), 32, ANYONE).is_ok());
    // An admin removed is no admin any more.
    let next = apply(&rec, "alice", &commit(&[], &["alice"], false), 32, ANYONE).unwrap();
    assert!(next.admins.is_empty());
}

#[test]
fn external_commits_only_into_public_rooms_and_only_for_the_sender() {
    let public = room(GroupKind::Public);
    let next = apply(&public, "carol", &commit(&["carol"], &[], true), 32, ANYONE).unwrap();
    assert!(next.is_member("carol"));
    assert_eq!(
        code(apply(&room(GroupKind::Invite), "carol", &commit(&["carol"], &[], true), 32, ANYONE)),
        ErrorCode::NotAllowed
    );
    assert_eq!(code(apply(&public, "carol", &commit(&["dave"], &[], true), 32, ANYONE)), ErrorCode::NotAllowed);
    assert_eq!(code(apply(&public, "carol", &commit(&["carol"], &["bob"], true), 32, ANYONE)), ErrorCode::NotAllowed);
}

#[test]
fn direct_conversations_keep_their_two_members_and_names_are_checked() {
    let mut dm = room(GroupKind::Direct);
    dm.room = None;
    dm.admins.clear();
    assert!(apply(&dm, "bob", &commit(&[], &[], false), 32, ANYONE).is_ok(), "updates are fine");
    assert_eq!(code(apply(&dm, "bob", &commit(&["carol"], &[], false), 32, ANYONE)), ErrorCode::NotAllowed);
    assert_eq!(code(apply(&dm, "bob", &commit(&[], &["alice"], false), 32, ANYONE)), ErrorCode::NotAllowed);
    let rec = room(GroupKind::Invite);
    assert_eq!(code(apply(&rec, "alice", &commit(&["a/b"], &[], false), 32, ANYONE)), ErrorCode::BadRequest);
    assert_eq!(code(apply(&rec, "alice", &commit(&["carol", "Carol"], &[], false), 32, ANYONE)), ErrorCode::BadRequest);
    let mut no_welcome = commit(&["carol"], &[], false);
    no_welcome.welcome = None;
    assert_eq!(code(apply(&rec, "alice", &no_welcome, 32, ANYONE)), ErrorCode::BadRequest);
}

#[test]
fn only_ed25519_keys_have_a_raw_form() {
    let key = cipherline_proto::crypto::sign::IdentityKey::ed25519_from_seed(&[1; 32]).unwrap();
    let public = key.public_key();
    let raw = ed25519_raw(Some((public.algorithm().to_u16(), public.spki().to_vec()))).unwrap();
    assert_eq!(&raw[..], &public.spki()[12..]);
    assert!(ed25519_raw(Some((0x0804, public.spki().to_vec()))).is_none());
    assert!(ed25519_raw(None).is_none());
}

#[tokio::test]
async fn a_group_lock_is_held_by_one_request_at_a_time_and_leaves_nothing_behind() {
    let groups = Groups { rooms: Mutex::new(HashMap::new()), locks: Mutex::new(HashMap::new()) };
    let first = groups.lock("group/01".into()).await.unwrap();
    let other = groups.lock("group/02".into()).await.unwrap();
    // The same group waits for the first holder.
    let waiting = tokio::time::timeout(Duration::from_millis(100), groups.lock("group/01".into())).await;
    assert!(waiting.is_err(), "a second holder of the same lock");
    drop(first);
    let second = groups.lock("group/01".into()).await.unwrap();
    drop((second, other));
    assert!(lock(&groups.locks).is_empty(), "unused locks are dropped from the map");
}
