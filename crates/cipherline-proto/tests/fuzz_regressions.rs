//! The fuzz targets' committed inputs, run as ordinary tests through the
//! very drivers the fuzz targets call (`fuzz/src/proto.rs`): the seed corpus
//! (`fuzz/seeds/TARGET/`) and every input that once made a target fail
//! (`fuzz/regressions/TARGET/`). CI runs these; it does not fuzz.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

#[path = "../../../fuzz/src/proto.rs"]
mod proto;

use std::path::{Path, PathBuf};

use proto::Stage;

/// Every committed input of `target`, seeds and regressions, by file name.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir: PathBuf = fuzz.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = format!("{kind}/{target}/{}", path.file_name().unwrap().to_string_lossy());
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

fn run_all(target: &str, driver: impl Fn(&[u8])) -> usize {
    let all = inputs(target);
    for (name, data) in &all {
        eprintln!("{name}");
        driver(data);
    }
    all.len()
}

#[test]
fn deframer_inputs() {
    assert!(run_all("deframer", proto::deframer) > 0);
}

#[test]
fn handshake_message_inputs() {
    assert!(run_all("handshake_message", proto::handshake_message) > 0);
}

#[test]
fn record_open_inputs() {
    assert!(run_all("record_open", proto::record_open) > 0);
}

#[test]
fn session_inputs() {
    assert!(run_all("session", proto::session) > 0);
}

#[test]
fn app_message_inputs() {
    assert!(run_all("app_message", proto::app_message) > 0);
}

#[test]
fn server_handshake_inputs() {
    assert!(
        run_all("server_handshake", |d| {
            let _ = proto::server_handshake(d);
        }) > 0
    );
}

#[test]
fn client_handshake_inputs() {
    assert!(
        run_all("client_handshake", |d| {
            let _ = proto::client_handshake(d);
        }) > 0
    );
}

/// The seeds still start the fuzzer from complete handshakes, password
/// mode included: a recorded peer flight authenticates again when replayed
/// (classical suites; with ML-KEM, or a client encrypting to RSA, AWS-LC
/// draws randomness of its own and the replay stops after the first
/// flight). If the protocol changes,
/// regenerate them: `cargo run --release --example make_seeds
/// --manifest-path fuzz/Cargo.toml -- fuzz/seeds`.
#[test]
fn seeds_replay_whole_handshakes() {
    let server_deep = ["c4-s0", "c5-s2", "c5-s4", "c4-s1", "c6-s9", "c12-s16", "c12-s17", "c12-s32"];
    for (name, data) in inputs("server_handshake") {
        let deep = server_deep.iter().any(|s| name.ends_with(s));
        let stage = proto::server_handshake(&data);
        if deep {
            assert_eq!(stage, Stage::Session, "{name}");
        } else if name.starts_with("seeds/") {
            assert!(stage >= Stage::Keys, "{name}");
        }
    }
    let client_deep = ["c4-s0", "c5-s2", "c5-s4", "c12-s16", "c12-s32"];
    for (name, data) in inputs("client_handshake") {
        let deep = client_deep.iter().any(|s| name.ends_with(s));
        let stage = proto::client_handshake(&data);
        if deep {
            assert_eq!(stage, Stage::Session, "{name}");
        } else if name.starts_with("seeds/") {
            assert!(stage >= Stage::Keys, "{name}");
        }
    }
}
