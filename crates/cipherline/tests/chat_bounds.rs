//! Attacks on `cipherline chat`'s memory bounds (issue 17), against the
//! real binary: a peer flooding it with version-1 offers past the 64 it
//! remembers, and a paste far past the 1,000 lines it queues while the
//! connection is down. (The 4,096 events held while the first room is
//! joined are tested beside the code, chat/mod.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cipherline_proto::app::{ClientMessage, Target};
use common::offers::raw;
use common::{Chat, Server, line_channel, offer_id, wait_for_line};

/// Offers chat remembers for `/accept` (chat/mod.rs MAX_OFFERS).
const KEPT: usize = 64;
/// Lines chat queues while it cannot send them (chat/mod.rs MAX_QUEUED).
const QUEUED: usize = 1000;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_flood_of_offers_leaves_the_newest_64_answerable_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    // The server lets the flood through: chat's own bound is attacked.
    let limits = "max_transfers_per_client = 1000\nmax_offer_recipients_per_client = 100000\n\
                  messages_per_sec = 100000\nburst = 100000\nqueue_len = 4096\n";
    let server = Server::quick_with_limits(dir.path(), Some(limits));
    let mut alice = Chat::start(&server, "alice", &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut mallory = rt.block_on(raw(&server, "mallory"));
    const OFFERS: usize = 150;
    rt.block_on(async {
        for i in 0..OFFERS {
            let transfer = mallory.writer().next_id();
            let offer = ClientMessage::FileOffer {
                transfer,
                to: Target::Room("lobby".into()),
                name: format!("f{i:03}.bin"),
                size: 10,
            };
            mallory.send_message(&offer).await.unwrap();
        }
    });
    // Every offer is said, with its id.
    let mut ids = Vec::new();
    for i in 0..OFFERS {
        let seen = alice.wait(&format!("f{i:03}.bin"));
        let line = seen.last().unwrap();
        assert!(line.contains("mallory offers"), "{line}");
        ids.push(offer_id(line));
    }
    // The oldest can no longer be answered; chat says which can: the
    // newest 64, oldest first.
    alice.type_line(&format!("/accept {}", ids[0]));
    let said = alice.wait("no file offer");
    let line = said.last().unwrap();
    let waiting: Vec<u64> =
        line.split("waiting: ").nth(1).unwrap().split(", ").map(|id| id.trim().parse().unwrap()).collect();
    assert_eq!(waiting, ids[OFFERS - KEPT..], "{line}");
    // The newest is still answerable.
    alice.type_line(&format!("/decline {}", ids[OFFERS - 1]));
    alice.wait(&format!("declined f{:03}.bin from mallory", OFFERS - 1));
    drop(mallory);
    alice.quit();
}

#[test]
fn a_paste_while_disconnected_is_read_no_further_than_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::quick(dir.path());
    let mut chat = server.client("chat", "alice").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let lines = line_channel(&mut chat);
    wait_for_line(&lines, "in room lobby");
    server.kill();
    wait_for_line(&lines, "connection lost");
    // 20,000 lines of 4 KiB (80 MiB): far more than the queue holds. The
    // writer blocks once chat stops reading.
    const LINES: usize = 20_000;
    const LEN: usize = 4096;
    let mut input = chat.stdin.take().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&written);
    let writer = std::thread::spawn(move || {
        let line = format!("{}\n", "z".repeat(LEN - 1));
        for _ in 0..LINES {
            if input.write_all(line.as_bytes()).is_err() {
                return;
            }
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    // Wait until the writer has stopped moving (chat reads no more).
    let mut last = usize::MAX;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(500));
        let now = written.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    let read = written.load(Ordering::SeqCst);
    // The queue, the input channel (64 lines) and the pipe's buffer.
    assert!(read >= QUEUED, "chat queues {QUEUED} lines while disconnected, read {read}");
    assert!(read < QUEUED + 200, "chat went on reading past its queue: {read} lines of {LINES}");
    // And its memory shows it: a few MiB of lines, not 80.
    let rss = rss_kib(chat.id());
    assert!(rss < 48 * 1024, "chat holds {rss} KiB");
    // Nothing was said about the lines (they wait, none is dropped).
    let said: Vec<String> = lines.try_iter().collect();
    assert!(!said.iter().any(|l| l.contains("not sent")), "{said:?}");
    chat.kill().unwrap();
    chat.wait().unwrap();
    writer.join().unwrap();
}
