//! The trust decision and the known-servers file: first contact (recorded
//! with accept-new or a "yes", refused with no terminal or a "no"), match,
//! changed key (always refused), pinned keys (bypass the file), and
//! concurrent writers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::io;
use std::sync::{Arc, Barrier};

use cipherline_keys::{
    Approval, DataDir, Error, Fingerprint, FirstContact, KeyKind, KnownServers, PrivateKey, ServerAddr, ServerAuth,
    TrustPolicy, Trusted, load_public_key, public_key_path, write_key_pair,
};
use cipherline_proto::crypto::kem::{ServerKey, ServerPublicKey};

fn server_key(n: u8) -> ServerPublicKey {
    ServerKey::x25519_from_bytes(&[n; 32]).unwrap().public_key().clone()
}

fn addr(s: &str) -> ServerAddr {
    s.parse().unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    known: KnownServers,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let known = DataDir::at(dir.path().join("data")).known_servers();
    Setup { _dir: dir, known }
}

fn file_text(known: &KnownServers) -> Option<String> {
    std::fs::read_to_string(known.path()).ok()
}

#[test]
fn first_contact_with_accept_new_records_then_matches() {
    let s = setup();
    let policy = TrustPolicy::new(s.known.clone()).accept_new(true);
    let server = addr("chat.example.org:7878");
    let key = server_key(1);
    assert_eq!(policy.check(&server, &key, None).unwrap(), Trusted::Recorded { by: Approval::AcceptNew });
    let text = file_text(&s.known).unwrap();
    assert!(text.contains(&format!("chat.example.org:7878 {}\n", Fingerprint::of_server_key(&key))), "{text}");
    // Next time it is simply known, with or without the flag.
    assert!(matches!(policy.check(&server, &key, None).unwrap(), Trusted::Known { .. }));
    let strict = TrustPolicy::new(s.known.clone());
    assert!(matches!(strict.check(&server, &key, None).unwrap(), Trusted::Known { .. }));
}

#[test]
fn first_contact_without_terminal_or_flag_is_refused_and_nothing_is_written() {
    let s = setup();
    let policy = TrustPolicy::new(s.known.clone());
    let key = server_key(1);
    match policy.check(&addr("a.example:1"), &key, None) {
        Err(e @ Error::UnknownServer { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&Fingerprint::of_server_key(&key).to_string()), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(file_text(&s.known), None);
}

#[test]
fn first_contact_prompt_shows_the_fingerprint_and_obeys_the_answer() {
    let s = setup();
    let policy = TrustPolicy::new(s.known.clone());
    let key = server_key(2);
    let server = addr("b.example:2");
    let mut seen = Vec::new();
    let mut say_no = |c: &FirstContact<'_>| -> io::Result<bool> {
        seen.push((c.server().to_string(), c.fingerprint(), c.key_description()));
        Ok(false)
    };
    assert!(matches!(policy.check(&server, &key, Some(&mut say_no)), Err(Error::ServerRejected { .. })));
    assert_eq!(seen, [("b.example:2".to_owned(), Fingerprint::of_server_key(&key), "X25519".to_owned())]);
    assert_eq!(file_text(&s.known), None);

    let mut say_yes = |_: &FirstContact<'_>| -> io::Result<bool> { Ok(true) };
    assert_eq!(policy.check(&server, &key, Some(&mut say_yes)).unwrap(), Trusted::Recorded { by: Approval::Prompt });
    // Known now: the prompt is not asked again.
    let mut must_not_ask = |_: &FirstContact<'_>| -> io::Result<bool> { panic!("asked for a known server") };
    assert!(matches!(policy.check(&server, &key, Some(&mut must_not_ask)).unwrap(), Trusted::Known { .. }));

    let mut broken = |_: &FirstContact<'_>| -> io::Result<bool> { Err(io::Error::other("tty gone")) };
    assert!(matches!(policy.check(&addr("c.example:3"), &key, Some(&mut broken)), Err(Error::Prompt(_))));
}

#[test]
fn changed_key_is_refused_even_with_accept_new_or_a_yes() {
    let s = setup();
    let server = addr("chat.example.org:7878");
    let (old, new) = (server_key(1), server_key(2));
    TrustPolicy::new(s.known.clone()).accept_new(true).check(&server, &old, None).unwrap();
    let before = file_text(&s.known);

    let policy = TrustPolicy::new(s.known.clone()).accept_new(true);
    let mut say_yes = |_: &FirstContact<'_>| -> io::Result<bool> { panic!("a changed key must not be offered") };
    match policy.check(&server, &new, Some(&mut say_yes)) {
        Err(Error::ServerKeyChanged(change)) => {
            assert_eq!(change.server, server);
            assert_eq!(change.known, ServerAuth::Key(Fingerprint::of_server_key(&old)));
            assert_eq!(change.presented, ServerAuth::Key(Fingerprint::of_server_key(&new)));
            assert_eq!(change.path, s.known.path());
            assert_eq!(change.line, 3); // after the two header comment lines
            let msg = Error::ServerKeyChanged(change.clone()).to_string();
            assert!(msg.contains(&change.known.to_string()) && msg.contains(&change.presented.to_string()), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(file_text(&s.known), before, "the file must not change");
    // The same host on another port is another server.
    assert!(matches!(policy.check(&addr("chat.example.org:7879"), &new, None).unwrap(), Trusted::Recorded { .. }));
}

#[test]
fn pinned_key_bypasses_the_file() {
    let s = setup();
    let server = addr("chat.example.org:7878");
    let (recorded, pinned) = (server_key(1), server_key(2));
    TrustPolicy::new(s.known.clone()).accept_new(true).check(&server, &recorded, None).unwrap();
    let before = file_text(&s.known);

    // --server-key: the public key file an operator hands out.
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate(KeyKind::X25519).unwrap();
    let path = dir.path().join("server_key");
    write_key_pair(&key, &path, None, false).unwrap();
    let from_file = load_public_key(&public_key_path(&path)).unwrap();
    let policy = TrustPolicy::new(s.known.clone()).pin(Some(Fingerprint::of_server_key(&from_file)));
    // Matches the pin although the file records another key for this server.
    assert_eq!(policy.check(&server, &from_file, None).unwrap(), Trusted::Pinned);

    // --server-fingerprint: a mismatch names both fingerprints.
    let policy = TrustPolicy::new(s.known.clone()).accept_new(true).pin(Some(Fingerprint::of_server_key(&pinned)));
    assert_eq!(policy.check(&server, &pinned, None).unwrap(), Trusted::Pinned);
    match policy.check(&server, &recorded, None) {
        Err(e @ Error::PinMismatch { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&Fingerprint::of_server_key(&pinned).to_string()), "{msg}");
            assert!(msg.contains(&Fingerprint::of_server_key(&recorded).to_string()), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // A pinned first contact is not recorded.
    assert_eq!(policy.check(&addr("new.example:1"), &pinned, None).unwrap(), Trusted::Pinned);
    assert_eq!(file_text(&s.known), before);
}

#[test]
fn concurrent_writers_leave_every_entry_in_a_well_formed_file() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 12;
    let s = setup();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let known = s.known.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let policy = TrustPolicy::new(known).accept_new(true);
                barrier.wait();
                for i in 0..PER_THREAD {
                    let server = addr(&format!("host-{t}-{i}.example:7878"));
                    let key = server_key(u8::try_from(t * PER_THREAD + i + 1).unwrap());
                    assert!(matches!(policy.check(&server, &key, None).unwrap(), Trusted::Recorded { .. }));
                }
                // Everyone also races on one shared server with one key.
                policy.check(&addr("shared.example:1"), &server_key(200), None).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let entries = s.known.entries().unwrap();
    assert_eq!(entries.len(), THREADS * PER_THREAD + 1, "{:?}", file_text(&s.known));
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            let want = addr(&format!("host-{t}-{i}.example:7878"));
            let key = server_key(u8::try_from(t * PER_THREAD + i + 1).unwrap());
            let found: Vec<_> = entries.iter().filter(|e| e.server() == &want).collect();
            assert_eq!(found.len(), 1, "{want}");
            assert_eq!(found[0].fingerprint(), Some(Fingerprint::of_server_key(&key)));
        }
    }
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(s.known.path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "known_servers" && n != "known_servers.lock")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// Issue 12 item 5: a server that presents no key (password-only) must not
// slip past a pin or a recorded key, and a password-only server recorded as
// such must not silently grow a key.

#[test]
fn a_keyless_server_is_refused_with_a_pin_or_a_recorded_key_even_in_password_only_mode() {
    let s = setup();
    let server = addr("chat.example.org:7878");
    let key = server_key(1);
    let pinned = Fingerprint::of_server_key(&key);
    // A pin: the server must present that key; no key at all is refused.
    for password_only in [false, true] {
        let policy = TrustPolicy::new(s.known.clone()).pin(Some(pinned)).password_only(password_only);
        match policy.check_keyless(&server) {
            Err(e @ Error::PinnedServerHasNoKey { .. }) => {
                assert!(e.to_string().contains(&pinned.to_string()), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(file_text(&s.known), None);
    // A recorded key: a keyless server at that address is a changed key.
    TrustPolicy::new(s.known.clone()).accept_new(true).check(&server, &key, None).unwrap();
    let before = file_text(&s.known);
    for password_only in [false, true] {
        let policy = TrustPolicy::new(s.known.clone()).accept_new(true).password_only(password_only);
        match policy.check_keyless(&server) {
            Err(Error::ServerKeyChanged(change)) => {
                assert_eq!((change.known, change.presented), (ServerAuth::Key(pinned), ServerAuth::PasswordOnly));
                assert_eq!(change.line, 3);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(file_text(&s.known), before, "the file must not change");
}

#[test]
fn a_keyless_server_is_trusted_only_in_password_only_mode_and_recorded_as_such() {
    let s = setup();
    let server = addr("family.example.net:7878");
    // Not asked for: refused, nothing recorded, even with --accept-new.
    let policy = TrustPolicy::new(s.known.clone()).accept_new(true);
    assert!(matches!(policy.check_keyless(&server), Err(Error::PasswordOnlyNotRequested { .. })));
    assert_eq!(file_text(&s.known), None);
    // Asked for: recorded as password-only, then known.
    let policy = TrustPolicy::new(s.known.clone()).password_only(true);
    assert_eq!(policy.check_keyless(&server).unwrap(), Trusted::Recorded { by: Approval::PasswordOnly });
    let text = file_text(&s.known).unwrap();
    assert!(text.contains("\nfamily.example.net:7878 password-only\n"), "{text}");
    assert_eq!(policy.check_keyless(&server).unwrap(), Trusted::Known { line: 3 });
    assert_eq!(s.known.entries().unwrap()[0].auth(), ServerAuth::PasswordOnly);
    // Recorded as password-only does not stand in for the flag.
    let without = TrustPolicy::new(s.known.clone());
    assert!(matches!(without.check_keyless(&server), Err(Error::PasswordOnlyNotRequested { .. })));
}

#[test]
fn a_key_appearing_at_a_password_only_server_is_a_changed_key() {
    let s = setup();
    let server = addr("family.example.net:7878");
    TrustPolicy::new(s.known.clone()).password_only(true).check_keyless(&server).unwrap();
    let before = file_text(&s.known);
    let key = server_key(7);
    let presented = Fingerprint::of_server_key(&key);
    let mut never = |_: &FirstContact<'_>| -> io::Result<bool> { panic!("a changed server must not be offered") };
    for password_only in [false, true] {
        let policy = TrustPolicy::new(s.known.clone()).accept_new(true).password_only(password_only);
        match policy.check(&server, &key, Some(&mut never)) {
            Err(Error::ServerKeyChanged(change)) => {
                assert_eq!((change.known, change.presented), (ServerAuth::PasswordOnly, ServerAuth::Key(presented)));
                let msg = Error::ServerKeyChanged(change.clone()).to_string();
                assert!(msg.contains("password-only") && msg.contains(&presented.to_string()), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(file_text(&s.known), before, "the file must not change");
    // `known-servers add` cannot record a key over it either.
    assert!(matches!(s.known.add(&server, &presented), Err(Error::ServerKeyChanged(_))));
}

#[test]
fn password_only_mode_refuses_a_server_that_presents_a_key() {
    let s = setup();
    let server = addr("chat.example.org:7878");
    let key = server_key(3);
    let policy = TrustPolicy::new(s.known.clone()).accept_new(true).password_only(true);
    match policy.check(&server, &key, None) {
        Err(e @ Error::KeyNotExpected { .. }) => {
            assert!(e.to_string().contains(&Fingerprint::of_server_key(&key).to_string()), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(file_text(&s.known), None, "nothing is recorded");
    // Even a recorded key: the flag says the server has none.
    TrustPolicy::new(s.known.clone()).accept_new(true).check(&server, &key, None).unwrap();
    assert!(matches!(policy.check(&server, &key, None), Err(Error::KeyNotExpected { .. })));
}
