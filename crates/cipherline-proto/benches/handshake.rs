//! Criterion benchmarks: a full in-memory handshake per suite, and record
//! seal/open at 64 B, 1 KiB and 16 KiB. Results go in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use cipherline_proto::crypto::SystemRng;
use cipherline_proto::crypto::kem::ServerKey;
use cipherline_proto::handshake::client::ExpectServerIdentity;
use cipherline_proto::handshake::server::{ExpectClientHello, ServerStep};
use cipherline_proto::{ClientConfig, Deframer, Frame, ServerConfig, Session, Suite};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut d = Deframer::new();
    d.push(bytes);
    std::iter::from_fn(|| d.next_frame().unwrap()).collect()
}

fn key(name: &str) -> Arc<ServerKey> {
    if name == "x25519" {
        return Arc::new(ServerKey::x25519_from_bytes(&[0x42; 32]).unwrap());
    }
    let path = format!("{}/../../testdata/keys/{name}.pk8.der", env!("CARGO_MANIFEST_DIR"));
    Arc::new(ServerKey::rsa_from_pkcs8(&std::fs::read(path).unwrap()).unwrap())
}

/// One complete handshake, both sides, with real randomness.
fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> (Session, Session) {
    let now = Instant::now();
    let mut rng = SystemRng;
    let (s, si) = ExpectClientHello::new(server.clone()).unwrap();
    let c = ExpectServerIdentity::new(client.clone()).unwrap().handle_server_identity(&frames(&si)[0]).unwrap();
    let (c, ch) = c.into_client_hello(&mut rng).unwrap();
    let (s, sh_sf) = s.handle_client_hello(&frames(&ch)[0], &mut rng, now).unwrap();
    let f = frames(&sh_sf);
    let c = c.handle_server_hello(&f[0], now).unwrap();
    let (client_session, cf) = c.handle_server_finished(&f[1], now).unwrap();
    let ServerStep::Done(server_session) = s.handle_frame(&frames(&cf)[0], now).unwrap() else { unreachable!() };
    (client_session, server_session)
}

fn bench_handshakes(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.sample_size(20);
    for key_name in ["rsa2048", "rsa3072", "rsa4096", "x25519"] {
        let key = key(key_name);
        let kem = key.public_key().static_kem();
        let server = Arc::new(ServerConfig::new(key));
        for suite in Suite::FORWARD_SECRET.into_iter().filter(|s| s.static_kem == kem) {
            // The AEAD hardly matters for a handshake: bench AES-GCM suites only.
            if suite.aead != cipherline_proto::suite::Aead::Aes256Gcm {
                continue;
            }
            let client = Arc::new(ClientConfig { suites: vec![suite], ..ClientConfig::default() });
            group.bench_function(BenchmarkId::new(key_name, suite), |b| {
                b.iter(|| black_box(handshake(&client, &server)))
            });
        }
    }
    group.finish();
}

fn bench_records(c: &mut Criterion) {
    let server = Arc::new(ServerConfig::new(key("x25519")));
    let mut group = c.benchmark_group("record");
    for suite in [Suite::from_u16(0x0221).unwrap(), Suite::from_u16(0x0222).unwrap()] {
        let client = Arc::new(ClientConfig { suites: vec![suite], ..ClientConfig::default() });
        let aead = if suite.to_u16() & 0xf == 1 { "aes256gcm" } else { "chacha20poly1305" };
        for size in [64usize, 1024, 16383] {
            let data = vec![0xa5u8; size];
            group.throughput(Throughput::Bytes(size as u64));
            let (mut tx, mut rx) = handshake(&client, &server);
            let now = Instant::now();
            group.bench_function(BenchmarkId::new(format!("seal+open/{aead}"), size), |b| {
                b.iter(|| {
                    let wire = tx.send(black_box(&data), now).unwrap();
                    let mut d = Deframer::new();
                    d.push(&wire);
                    while let Some(f) = d.next_frame().unwrap() {
                        black_box(rx.handle_frame(&f, now).unwrap());
                    }
                });
            });
            let (mut tx, _) = handshake(&client, &server);
            group.bench_function(BenchmarkId::new(format!("seal/{aead}"), size), |b| {
                b.iter(|| black_box(tx.send(black_box(&data), now).unwrap()));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_handshakes, bench_records);
criterion_main!(benches);
