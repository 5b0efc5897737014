//! Writes the seed corpus from real handshakes: `cargo run --release --example make_seeds
//! --manifest-path fuzz/Cargo.toml -- DIR` (default
//! `fuzz/seeds`). Each seed is what one driver reads: a configuration byte
//! and the peer's real flights, recorded with the drivers' seeded random
//! generators so that the recorded flights authenticate again when replayed
//! and the fuzzer starts from complete, valid handshakes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cipherline_fuzz::proto::handshake_pair;
use cipherline_proto::app::{ClientMessage, Delivery, RateLimits, SendSignature, ServerMessage, Signed, Target};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let path = dir.join(target);
    std::fs::create_dir_all(&path).expect("seed directory");
    std::fs::write(path.join(name), bytes).expect("seed file");
}

fn main() {
    let dir: PathBuf = std::env::args().nth(1).map_or_else(|| PathBuf::from("fuzz/seeds"), PathBuf::from);
    let now = Instant::now();
    // (client selector, server selector): X25519 and RSA server keys, each
    // client-auth mode, the no-forward-secrecy suite, and a post-quantum
    // handshake (which replays only up to ServerHello).
    // Then password mode: with the X25519 key, with the RSA key, and
    // password only.
    let pairs: [(u8, u8); 10] =
        [(4, 0), (5, 2), (5, 4), (4, 1), (6, 9), (0, 0), (0, 1), (12, 0x10), (12, 0x11), (12, 0x20)];
    for (client_sel, server_sel) in pairs {
        let Some((mut client, mut server, [si, ch, sh_sf, cf])) = handshake_pair(client_sel, server_sel, now) else {
            panic!("handshake {client_sel}/{server_sel} failed");
        };
        let name = format!("c{client_sel}-s{server_sel}");
        let hello = ClientMessage::Hello { name: "alice".into() }.encode().expect("hello");
        let mut from_client = cf.clone();
        from_client.extend(client.send(&hello, now).expect("send"));
        from_client.extend(client.request_key_update(now).expect("update"));
        from_client.extend(client.send(b"after the update", now).expect("send"));
        from_client.extend(client.close().expect("close"));
        let welcome = ServerMessage::Welcome {
            name: "alice".into(),
            max_message: 65536,
            idle_timeout_secs: 300,
            rates: RateLimits { messages_per_sec: 20, burst: 40, bytes_per_sec: 1 << 20, bytes_burst: 8 << 20 },
        };
        let mut from_server = sh_sf.clone();
        from_server.extend(server.send(&welcome.encode().expect("welcome"), now).expect("send"));
        from_server.extend(server.close().expect("close"));

        write(&dir, "server_handshake", &name, &[&[server_sel][..], &ch, &from_client].concat());
        write(&dir, "client_handshake", &name, &[&[client_sel][..], &si, &from_server].concat());
        for (i, flight) in [&si, &ch, &sh_sf, &cf].into_iter().enumerate() {
            write(&dir, "deframer", &format!("{name}-{i}"), &[&[0x10][..], flight].concat());
        }
        // The plaintext handshake messages, without their frame headers.
        for (i, flight) in [&si, &ch].into_iter().enumerate() {
            write(&dir, "handshake_message", &format!("{name}-{i}"), flight.get(3..).unwrap_or_default());
        }
        if let Some(first) = sh_sf.get(3..) {
            let len = usize::from(u16::from_be_bytes([sh_sf[1], sh_sf[2]]));
            write(&dir, "handshake_message", &format!("{name}-2"), first.get(..len).unwrap_or_default());
        }
    }
    // App messages: one of each kind.
    let app: Vec<Vec<u8>> = vec![
        ClientMessage::Hello { name: "alice".into() }.encode().expect("m"),
        ClientMessage::Send { id: 7, to: Target::Room("lobby".into()), text: "hello".into(), signed: None }
            .encode()
            .expect("m"),
        ClientMessage::Send {
            id: 8,
            to: Target::User("bob".into()),
            text: "signed".into(),
            signed: Some(SendSignature { sent_at_ms: 1, signature: vec![7; 64] }),
        }
        .encode()
        .expect("m"),
        ClientMessage::Whois { name: "bob".into() }.encode().expect("m"),
        ServerMessage::Identity { name: "bob".into(), algorithm: 0x0807, key: vec![1; 44] }.encode().expect("m"),
        ClientMessage::FileOffer { transfer: 1, to: Target::User("bob".into()), name: "a.txt".into(), size: 9 }
            .encode()
            .expect("m"),
        ClientMessage::FileChunk { transfer: 1, data: vec![1, 2, 3] }.encode().expect("m"),
        ClientMessage::FileCancel { transfer: 1, sender: String::new(), reason: "no".into() }.encode().expect("m"),
        ServerMessage::Message(Delivery {
            id: 1,
            timestamp_ms: 2,
            from: "bob".into(),
            to: Target::Room("lobby".into()),
            text: "hi".into(),
            signed: Some(Signed {
                client_id: 8,
                sent_at_ms: 1,
                algorithm: 0x0807,
                sender_key: vec![1; 44],
                signature: vec![2; 64],
            }),
        })
        .encode()
        .expect("m"),
        ServerMessage::Members { room: "lobby".into(), names: vec!["a".into(), "b".into()] }.encode().expect("m"),
        ServerMessage::FileCancelled { transfer: 1, sender: "a".into(), by: "b".into(), reason: "x".into() }
            .encode()
            .expect("m"),
    ];
    for (i, m) in app.iter().enumerate() {
        write(&dir, "app_message", &format!("msg-{i}"), m.get(4..).unwrap_or_default());
    }
    write(&dir, "app_message", "stream", &[&[0x40][..], &app.concat()].concat());
    // Sessions: a script that sends, updates keys, tampers and delivers.
    write(&dir, "session", "honest", &[0, 0, 3, 0x80, 5, 11, 0x8b, 1, 0, 9, 11, 2, 11, 0x8b]);
    write(&dir, "session", "tampered", &[1, 0, 3, 4, 0, 9, 2, 11, 0x80, 1, 5, 0x8b]);
    write(
        &dir,
        "record_open",
        "records",
        &[0, 1, 0, 5, b'h', b'i', 0, 0, 0x17, 3, 1, 1, 2, 0x18, 1, 0, 0, 0, 0x17, 0, 48],
    );
    // Key files from the repository's test data.
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    if let Ok(der) = std::fs::read(testdata.join("keys/rsa2048.pk8.der")) {
        write(&dir, "key_file", "rsa2048-pk8-der", &[&[1 + 3][..], &der].concat());
    }
    let x25519_spki =
        hex_decode("302a300506032b656e032100132c442be010fbd57e72603328aa76e71fccc1503aae219327d14d9c9993f472");
    write(&dir, "key_file", "x25519-spki", &[&[2][..], &x25519_spki].concat());
    write(&dir, "key_file", "x25519-spki-pem", &[&[3 * 3 + 1][..], &x25519_spki].concat());
    println!("seeds written to {}", dir.display());
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| s.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}
