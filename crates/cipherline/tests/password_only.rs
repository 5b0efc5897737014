//! Issue 12 item 5: a key-and-password server cannot be downgraded to
//! password-only. A man in the middle who knows the shared password stands
//! in front of the real server and answers as a password-only server (no
//! key in ServerIdentity). The `cipherline` client must refuse before it
//! sends ClientHello when the user pinned the key or the known-servers file
//! records one, must never run a password-only handshake unless asked with
//! `--password-only`, and must remember a password-only server as such so
//! that a key appearing later is caught.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cipherline_proto::{Deframer, FrameKind};
use common::{Server, bin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASSWORD: &str = "open sesame";

/// The two servers the proxy can put in front of the client: the real one
/// (key and password) and the attacker's (the same password, no key).
struct Servers {
    keyed: Server,
    keyless: Server,
    password_file: PathBuf,
    dir: tempfile::TempDir,
}

fn servers() -> Servers {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let key = dir.path().join("server_x25519");
    let made = bin()
        .args(["keygen", "--type", "x25519", "--out", key.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let pw = password_file.to_str().unwrap();
    let keyed_data = dir.path().join("keyed-data");
    let keyed = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        keyed_data.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--password-file",
        pw,
    ]);
    assert!(keyed.fingerprint.starts_with("SHA256:"), "{:?}", keyed.lines);
    let keyless_data = dir.path().join("keyless-data");
    let keyless = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        keyless_data.to_str().unwrap(),
        "--password-file",
        pw,
        "--password-only",
    ]);
    Servers { keyed, keyless, password_file, dir }
}

/// A relay at a fixed address whose upstream can be switched, recording
/// the kinds of the frames each client connection sent.
struct Proxy {
    addr: String,
    upstream: Arc<Mutex<SocketAddr>>,
    sent: Arc<Mutex<Vec<Vec<FrameKind>>>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = Arc::new(Mutex::new(upstream.parse().unwrap()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (to, log) = (upstream.clone(), sent.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = *to.lock().unwrap();
                let server = TcpStream::connect(target).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                });
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(Vec::new());
                    log.len() - 1
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let mut deframer = Deframer::new();
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        deframer.push(&buf[..n]);
                        while let Ok(Some(frame)) = deframer.next_frame() {
                            log.lock().unwrap()[index].push(frame.kind);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                });
            }
        });
        Proxy { addr, upstream, sent }
    }

    fn point_at(&self, server: &Server) {
        *self.upstream.lock().unwrap() = server.addr.parse().unwrap();
    }

    /// The frame kinds the last client connection sent.
    fn last_sent(&self) -> Vec<FrameKind> {
        self.sent.lock().unwrap().last().cloned().expect("a client connected")
    }

    /// Asserts that the last client sent nothing but (at most) an alert:
    /// no ClientHello, so nothing derived from the password.
    fn assert_refused_before_client_hello(&self) {
        let kinds = self.last_sent();
        assert!(kinds.iter().all(|k| *k == FrameKind::Alert), "the client sent {kinds:?}");
    }
}

/// `cipherline send` through `addr` with the shared password, a data
/// directory of its own, and `flags`.
async fn send(addr: &str, password_file: &Path, data: &Path, flags: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.args(["send", "--server", addr, "--name", "alice", "--no-identity", "--data-dir"])
        .arg(data)
        .arg("--password-file")
        .arg(password_file)
        .args(flags)
        .arg("hello")
        .stdin(Stdio::null());
    let child = tokio::process::Command::from(cmd).kill_on_drop(true).output();
    tokio::time::timeout(Duration::from_secs(30), child).await.expect("the client finishes").unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn known_servers(data: &Path) -> String {
    std::fs::read_to_string(data.join("known_servers")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_client_refuses_a_keyless_server_before_client_hello() {
    let s = servers();
    let proxy = Proxy::start(&s.keyed.addr).await;
    let data = s.dir.path().join("client");
    let pin = ["--server-fingerprint", s.keyed.fingerprint.as_str()];
    // Control: the real server, pinned, through the proxy.
    let out = send(&proxy.addr, &s.password_file, &data, &pin).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // The attacker, who knows the password, answers without a key.
    proxy.point_at(&s.keyless);
    let out = send(&proxy.addr, &s.password_file, &data, &pin).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("presented no key") && err.contains(&s.keyed.fingerprint), "{err}");
    proxy.assert_refused_before_client_hello();
    // A pin and --password-only contradict each other.
    let out = send(&proxy.addr, &s.password_file, &data, &[&pin[..], &["--password-only"]].concat()).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_key_cannot_be_dropped_by_a_keyless_server() {
    let s = servers();
    let proxy = Proxy::start(&s.keyed.addr).await;
    let data = s.dir.path().join("client");
    let out = send(&proxy.addr, &s.password_file, &data, &["--accept-new"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recorded = known_servers(&data);
    assert!(recorded.contains(&format!("{} {}\n", proxy.addr, s.keyed.fingerprint)), "{recorded}");

    proxy.point_at(&s.keyless);
    // Neither --accept-new nor --password-only lets the key go missing.
    for flags in [&["--accept-new"][..], &["--password-only"], &["--password-only", "--accept-new"]] {
        let out = send(&proxy.addr, &s.password_file, &data, flags).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{flags:?}: {err}");
        assert!(err.contains("HAS CHANGED") && err.contains("no key (password-only server)"), "{flags:?}: {err}");
        assert!(err.contains(&s.keyed.fingerprint), "{flags:?}: {err}");
        proxy.assert_refused_before_client_hello();
    }
    assert_eq!(known_servers(&data), recorded, "the file is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_password_only_a_keyless_server_is_refused() {
    let s = servers();
    let proxy = Proxy::start(&s.keyless.addr).await;
    let data = s.dir.path().join("client");
    // First contact, --accept-new, the right password: still no
    // password-only handshake unless it was asked for.
    let out = send(&proxy.addr, &s.password_file, &data, &["--accept-new"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("presented no key") && err.contains("--password-only"), "{err}");
    proxy.assert_refused_before_client_hello();
    assert!(!known_servers(&data).contains(&proxy.addr), "nothing recorded");
    // --password-only without a password is a usage error.
    let mut cmd = bin();
    cmd.args(["send", "--server", &proxy.addr, "--name", "alice", "--no-identity", "--password-only", "--data-dir"])
        .arg(&data)
        .arg("hello");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_only_server_is_recorded_and_a_key_appearing_later_is_caught() {
    let s = servers();
    let proxy = Proxy::start(&s.keyless.addr).await;
    let data = s.dir.path().join("client");
    let out = send(&proxy.addr, &s.password_file, &data, &["--password-only"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recorded = known_servers(&data);
    assert!(recorded.contains(&format!("\n{} password-only\n", proxy.addr)), "{recorded}");
    let out = send(&proxy.addr, &s.password_file, &data, &["--password-only"]).await;
    assert!(out.status.success(), "known now: {}", stderr(&out));

    // Now a server with a key answers at that address.
    proxy.point_at(&s.keyed);
    for flags in [&["--accept-new"][..], &["--password-only"]] {
        let out = send(&proxy.addr, &s.password_file, &data, flags).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{flags:?}: {err}");
        assert!(err.contains("HAS CHANGED") && err.contains(&s.keyed.fingerprint), "{flags:?}: {err}");
        assert!(err.contains("no key (password-only server)"), "{flags:?}: {err}");
        assert!(err.contains("known-servers remove"), "how to re-accept: {err}");
        proxy.assert_refused_before_client_hello();
    }
    assert_eq!(known_servers(&data), recorded, "the file is unchanged");

    // Re-accepting, as the hint says, after checking with the operator.
    let removed = bin().args(["known-servers", "remove", &proxy.addr, "--data-dir"]).arg(&data).output().unwrap();
    assert!(removed.status.success());
    let out = send(&proxy.addr, &s.password_file, &data, &["--accept-new"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(known_servers(&data).contains(&format!("{} {}\n", proxy.addr, s.keyed.fingerprint)));
}
