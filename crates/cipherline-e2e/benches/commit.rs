//! Commit cost by group size: for groups of 10, 100 and 1,000 members
//! (X-Wing) and one size in the interop suite, the time and size of a
//! commit adding one member, removing one, and updating the committer's
//! leaf, and the size of the Welcome; then, with the state in SQLite
//! files as the client keeps it, the time to encrypt and to receive one
//! message (each writes the group's whole state). Prints markdown tables.
//!
//! `cargo bench -p cipherline-e2e --bench commit`
//!
//! With `CIPHERLINE_COMMIT_BENCH=add1000` it runs only the X-Wing
//! 1,000-member "add 1" case and prints one JSON object instead (for
//! `bench/compare.sh`): the median wall time, the median CPU time of this
//! thread (from /proc/thread-self/schedstat, where readable), and sizes.
//!
//! Each time is the median of several builds; a build includes writing
//! the pending state to (in-memory) SQLite, as the real thing does. Each
//! commit is abandoned after measuring, so the group stays the same size.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use cipherline_e2e::{Conversation, Member, Pending, Suite};
use cipherline_proto::crypto::sign::IdentityKey;

/// Members added per commit while building the group.
const BATCH: usize = 100;

fn member(i: usize, suite: Suite) -> Member {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Member::new(&format!("user{i:04}"), &IdentityKey::ed25519_from_seed(&seed).unwrap(), suite).unwrap()
}

/// A group of `n` members as its creator holds it, and as its last
/// member holds it (the others never join: the creator commits alone).
/// With `dir`, both keep their state in files there.
fn build(n: usize, suite: Suite, dir: Option<&Path>) -> (Member, Conversation, Member, Conversation) {
    let open = |i: usize| match dir {
        Some(dir) => {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let key = IdentityKey::ed25519_from_seed(&seed).unwrap();
            Member::open(&dir.join(format!("{i}.sqlite3")), &format!("user{i:04}"), &key, suite).unwrap()
        }
        None => member(i, suite),
    };
    let creator = open(0);
    let last = open(n - 1);
    let mut conv = creator.create().unwrap();
    let mut i = 1;
    let mut welcome = Vec::new();
    while i < n {
        let end = (i + BATCH).min(n);
        let kps: Vec<Vec<u8>> = (i..end)
            .map(|j| {
                if j == n - 1 {
                    last.key_packages(1).unwrap().remove(0)
                } else {
                    member(j, suite).key_packages(1).unwrap().remove(0)
                }
            })
            .collect();
        welcome = conv.add(&kps).unwrap().welcome.unwrap();
        conv.confirm().unwrap();
        i = end;
    }
    assert_eq!(conv.members().unwrap().len(), n);
    let joined = last.join(&welcome).unwrap();
    (creator, conv, last, joined)
}

/// A group of `n` members in which every member joined and every second
/// one has since committed an update: the tree has no blank nodes left, as
/// in a group that has lived a while. Costs about n²/2 commit processings.
fn filled(n: usize, suite: Suite) -> Conversation {
    let members: Vec<Member> = (0..n).map(|i| member(i, suite)).collect();
    let mut convs = vec![members[0].create().unwrap()];
    for batch in members[1..].chunks(BATCH) {
        let kps: Vec<Vec<u8>> = batch.iter().map(|m| m.key_packages(1).unwrap().remove(0)).collect();
        let pending = convs[0].add(&kps).unwrap();
        convs[0].confirm().unwrap();
        for conv in &mut convs[1..] {
            conv.receive(&pending.commit).unwrap();
        }
        let welcome = pending.welcome.unwrap();
        convs.extend(batch.iter().map(|m| m.join(&welcome).unwrap()));
    }
    for i in (1..n).step_by(2) {
        let pending = convs[i].update().unwrap();
        convs[i].confirm().unwrap();
        for (j, conv) in convs.iter_mut().enumerate() {
            if j != i {
                conv.receive(&pending.commit).unwrap();
            }
        }
    }
    convs.swap_remove(0)
}

/// Median time of `runs` builds of a commit, and the last one built.
fn measure(
    conv: &mut Conversation,
    runs: usize,
    mut commit: impl FnMut(&mut Conversation) -> Pending,
) -> (Duration, Pending) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let pending = commit(conv);
        times.push(start.elapsed());
        conv.abandon().unwrap();
        last = Some(pending);
    }
    times.sort();
    (times[times.len() / 2], last.unwrap())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn kib(n: usize) -> String {
    if n < 10_240 { format!("{n} B") } else { format!("{:.0} KiB", n as f64 / 1024.0) }
}

/// CPU time this thread has used, from the scheduler's statistics.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(s.split_whitespace().next()?.parse().ok()?))
}

/// The one case compare.sh asks for, as JSON.
fn add_one_to_1000() {
    let (suite, n, runs) = (Suite::XWing, 1000, 5);
    let start = Instant::now();
    let mut conv = build(n, suite, None).1;
    let setup = start.elapsed();
    let newcomer = member(n + 1, suite).key_packages(1).unwrap();
    let mut cpu = Vec::with_capacity(runs);
    let (wall, pending) = measure(&mut conv, runs, |c| {
        let before = thread_cpu();
        let p = c.add(&newcomer).unwrap();
        if let (Some(a), Some(b)) = (before, thread_cpu()) {
            cpu.push(b.saturating_sub(a));
        }
        p
    });
    cpu.sort();
    let cpu_ms = cpu.get(cpu.len() / 2).map_or("null".to_owned(), |d| format!("{:.3}", d.as_secs_f64() * 1000.0));
    println!(
        "{{\"suite\": \"X-Wing\", \"members\": {n}, \"runs\": {runs}, \"setup_secs\": {:.1}, \"add_ms\": {:.3}, \
         \"add_cpu_ms\": {cpu_ms}, \"commit_bytes\": {}, \"welcome_bytes\": {}}}",
        setup.as_secs_f64(),
        wall.as_secs_f64() * 1000.0,
        pending.commit.len(),
        pending.welcome.map_or(0, |w| w.len()),
    );
}

fn main() {
    match std::env::var("CIPHERLINE_COMMIT_BENCH").as_deref() {
        Ok("add1000") => return add_one_to_1000(),
        Ok(other) => panic!("CIPHERLINE_COMMIT_BENCH={other}: the one case is add1000"),
        Err(_) => {}
    }
    // `true`: the tree filled in by members' own updates (see `filled`).
    let rows = [
        (Suite::XWing, 10, false),
        (Suite::XWing, 100, false),
        (Suite::XWing, 100, true),
        (Suite::XWing, 1000, false),
        (Suite::Interop, 1000, false),
    ];
    println!(
        "| suite | members | setup | add 1: time | add 1: commit | Welcome | remove 1: time | remove 1: commit | update: time | update: commit |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (suite, n, lived) in rows {
        let start = Instant::now();
        let mut conv = if lived { filled(n, suite) } else { build(n, suite, None).1 };
        let setup = start.elapsed();
        let runs = if n >= 1000 { 5 } else { 11 };
        let newcomer = member(n + 1, suite).key_packages(1).unwrap();
        let (add_t, add) = measure(&mut conv, runs, |c| c.add(&newcomer).unwrap());
        let victim = format!("user{:04}", n / 2);
        let (rm_t, rm) = measure(&mut conv, runs, |c| c.remove(&[victim.as_str()]).unwrap());
        let (up_t, up) = measure(&mut conv, runs, |c| c.update().unwrap());
        let name = match (suite, lived) {
            (Suite::XWing, false) => "X-Wing",
            (Suite::XWing, true) => "X-Wing, tree filled",
            (Suite::Interop, _) => "X25519 (interop)",
        };
        println!(
            "| {name} | {n} | {:.1} s | {} | {} | {} | {} | {} | {} | {} |",
            setup.as_secs_f64(),
            ms(add_t),
            kib(add.commit.len()),
            kib(add.welcome.map_or(0, |w| w.len())),
            ms(rm_t),
            kib(rm.commit.len()),
            ms(up_t),
            kib(up.commit.len()),
        );
    }

    println!();
    println!("| suite | members | state per member | encrypt 1 message | receive 1 message |");
    println!("|---|---:|---:|---:|---:|");
    for n in [10, 100, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let (_creator, mut conv, _last, mut joined) = build(n, Suite::XWing, Some(dir.path()));
        let runs = 21;
        let mut wires = Vec::with_capacity(runs);
        let mut enc = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            wires.push(conv.encrypt(b"a short message, as most are").unwrap());
            enc.push(start.elapsed());
        }
        let mut dec = Vec::with_capacity(runs);
        for wire in &wires {
            let start = Instant::now();
            joined.receive(wire).unwrap();
            dec.push(start.elapsed());
        }
        enc.sort();
        dec.sort();
        let state = std::fs::metadata(dir.path().join(format!("{}.sqlite3", n - 1))).unwrap().len() as usize;
        println!("| X-Wing | {n} | {} | {} | {} |", kib(state), ms(enc[runs / 2]), ms(dec[runs / 2]));
    }
}
