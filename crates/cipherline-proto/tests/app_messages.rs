//! The application message codec: every message round-trips, hostile
//! lengths and bytes are refused (PROTOCOL.md §13).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use cipherline_proto::app::*;
use cipherline_proto::error::DecodeError;
#[test]
fn round_trips() {
    let client = [
        ClientMessage::Hello { name: "alice".into() },
        ClientMessage::Join { room: "lobby".into() },
        ClientMessage::Leave { room: "lobby".into() },
        ClientMessage::Send { id: 7, to: Target::Room("lobby".into()), text: "héllo".into(), signed: None },
        ClientMessage::Send {
            id: 8,
            to: Target::User("bob".into()),
            text: String::new(),
            signed: Some(SendSignature { sent_at_ms: 5, signature: vec![1; 64] }),
        },
        ClientMessage::Whois { name: "bob".into() },
        ClientMessage::Who { room: "r".into() },
        ClientMessage::Ping { nonce: u64::MAX },
        ClientMessage::Goodbye,
        ClientMessage::FileOffer { transfer: 1, to: Target::User("b".into()), name: "a.txt".into(), size: 9 },
        ClientMessage::FileAnswer { transfer: 1, sender: "a".into(), accept: true },
        ClientMessage::FileChunk { transfer: 1, data: vec![0; MAX_CHUNK] },
        ClientMessage::FileEnd { transfer: 1, sha256: [7; 32], signature: None },
        ClientMessage::FileEnd { transfer: 2, sha256: [7; 32], signature: Some(vec![4; 64]) },
        ClientMessage::FileCancel { transfer: 1, sender: String::new(), reason: "disk full".into() },
        ClientMessage::FileAck { transfer: 1, sender: "a".into(), received: 16384 },
        ClientMessage::Received { upto: 1 << 40 },
        ClientMessage::Receipts { enabled: true },
        ClientMessage::Receipts { enabled: false },
        ClientMessage::Resume { after: 0 },
        ClientMessage::Resume { after: u64::MAX },
    ];
    let mut d = MessageDecoder::new(MAX_MESSAGE);
    for m in &client {
        d.push(&m.encode().unwrap());
    }
    for m in &client {
        assert_eq!(&ClientMessage::decode(&d.next_message().unwrap().unwrap()).unwrap(), m);
    }
    assert_eq!(d.next_message(), Ok(None));
    let server = [
        ServerMessage::Welcome {
            name: "alice".into(),
            max_message: 65536,
            idle_timeout_secs: 300,
            rates: RateLimits { messages_per_sec: 20, burst: 40, bytes_per_sec: 1 << 20, bytes_burst: 8 << 20 },
            queue: None,
        },
        ServerMessage::Welcome {
            name: "alice".into(),
            max_message: 65536,
            idle_timeout_secs: 300,
            rates: RateLimits::default(),
            queue: Some(QueueLimits { ttl_secs: 2_592_000, max_messages: 10_000, max_bytes: 64 << 20 }),
        },
        ServerMessage::Joined { room: "lobby".into() },
        ServerMessage::Left { room: "lobby".into() },
        ServerMessage::Message(Delivery {
            id: 1,
            timestamp_ms: 2,
            from: "bob".into(),
            to: Target::Room("lobby".into()),
            text: "hi".into(),
            signed: Some(Signed {
                client_id: 3,
                sent_at_ms: 4,
                algorithm: 0x0807,
                sender_key: vec![2; 44],
                signature: vec![3; 64],
            }),
            seq: 77,
        }),
        ServerMessage::Identity { name: "bob".into(), algorithm: 0, key: Vec::new() },
        ServerMessage::Ack { client_id: 1, id: 2, timestamp_ms: 3, queued: 4, live: 5, full: 6 },
        ServerMessage::Delivered { id: 9, by: "bob".into() },
        ServerMessage::Expired { id: 9, to: "bob".into(), seq: 4 },
        ServerMessage::Notice { kind: NoticeKind::Left, room: "lobby".into(), name: "bob".into() },
        ServerMessage::Members { room: "lobby".into(), names: vec!["a".into(), "b".into()] },
        ServerMessage::Error { code: ErrorCode::NameTaken, client_id: 0, text: "taken".into() },
        ServerMessage::Pong { nonce: 5 },
        ServerMessage::FileOffered {
            transfer: 1,
            from: "a".into(),
            to: Target::Room("r".into()),
            name: "a.txt".into(),
            size: 9,
        },
        ServerMessage::FileAnswered { transfer: 1, by: "b".into(), accept: false },
        ServerMessage::FileData { transfer: 1, from: "a".into(), data: vec![1, 2, 3] },
        ServerMessage::FileDone { transfer: 1, from: "a".into(), sha256: [9; 32], signed: None },
        ServerMessage::FileDone {
            transfer: 2,
            from: "a".into(),
            sha256: [9; 32],
            signed: Some(FileSigned { algorithm: 0x0807, sender_key: vec![2; 44], signature: vec![3; 64] }),
        },
        ServerMessage::FileCancelled { transfer: 1, sender: "a".into(), by: "b".into(), reason: "cancelled".into() },
        ServerMessage::FileAcked { transfer: 1, by: "b".into(), received: 5 },
    ];
    for m in &server {
        let bytes = m.encode().unwrap();
        assert_eq!(&ServerMessage::decode(&bytes[4..]).unwrap(), m);
    }
}

#[test]
fn hostile_lengths_and_bytes_are_refused() {
    let mut d = MessageDecoder::new(1000);
    d.push(&[0, 0, 0x10, 0]); // 4096 > 1000
    assert_eq!(d.next_message(), Err(DecodeError::FieldTooLong));
    let mut d = MessageDecoder::new(1000);
    d.push(&[0, 0, 0, 0]);
    assert_eq!(d.next_message(), Err(DecodeError::FrameLength));
    assert_eq!(ClientMessage::decode(&[0x01, 2, 0xff, 0xfe]), Err(DecodeError::IllegalValue), "not UTF-8");
    assert_eq!(ClientMessage::decode(&[0x07, 0]), Err(DecodeError::TrailingBytes));
    assert_eq!(ClientMessage::decode(&[0x42]), Err(DecodeError::UnknownMessageType));
    // A chunk over MAX_CHUNK is refused.
    let mut big = vec![0x0a, 0, 0, 0, 0, 0, 0, 0, 1, 0x40, 0x01];
    big.resize(big.len() + MAX_CHUNK + 1, 0);
    assert_eq!(ClientMessage::decode(&big), Err(DecodeError::FieldTooLong));
    assert_eq!(ClientMessage::decode(&[0x09, 0, 0, 0, 0, 0, 0, 0, 1, 1, b'a', 2]), Err(DecodeError::IllegalValue));
    // A member count larger than the bytes present is refused before allocating.
    assert_eq!(ServerMessage::decode(&[0x87, 1, b'r', 0x0f, 0xff]), Err(DecodeError::Truncated));
}

#[test]
fn names_outside_the_grammar_are_refused_by_a_client() {
    // What a relay could use to forge a known_peers line or a display line.
    let forged = "alice SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let bad = [
        ServerMessage::Welcome {
            name: forged.into(),
            max_message: 1,
            idle_timeout_secs: 1,
            rates: RateLimits::default(),
            queue: None,
        },
        ServerMessage::Message(Delivery {
            id: 1,
            timestamp_ms: 2,
            from: forged.into(),
            to: Target::Room("lobby".into()),
            text: "hi".into(),
            signed: None,
            seq: 0,
        }),
        ServerMessage::Message(Delivery {
            id: 1,
            timestamp_ms: 2,
            from: "bob".into(),
            to: Target::User("me\n".into()),
            text: "hi".into(),
            signed: None,
            seq: 0,
        }),
        ServerMessage::Identity { name: ".hidden".into(), algorithm: 0, key: Vec::new() },
        ServerMessage::Members { room: "lobby".into(), names: vec!["a".into(), "b c".into()] },
        ServerMessage::Notice { kind: NoticeKind::Joined, room: "lob by".into(), name: "a".into() },
        ServerMessage::Joined { room: String::new() },
        ServerMessage::FileOffered {
            transfer: 1,
            from: "-x".into(),
            to: Target::User("b".into()),
            name: "f".into(),
            size: 1,
        },
        ServerMessage::FileDone { transfer: 1, from: "a\u{202e}".into(), sha256: [0; 32], signed: None },
        ServerMessage::FileCancelled { transfer: 1, sender: "a".into(), by: "b\tc".into(), reason: "x".into() },
        ServerMessage::Delivered { id: 1, by: "b c".into() },
        ServerMessage::Expired { id: 1, to: "b\nc".into(), seq: 1 },
    ];
    for m in &bad {
        let decoded = ServerMessage::decode(&m.encode().unwrap()[4..]).unwrap();
        assert_eq!(decoded.check_names(), Err(DecodeError::InvalidName), "{m:?}");
    }
    let good = ServerMessage::Members { room: "lobby".into(), names: vec!["a".into(), "Bob_2.0-x".into()] };
    assert_eq!(good.check_names(), Ok(()));
    assert!(valid_name(&"x".repeat(64), MAX_NAME));
    assert!(!valid_name(&"x".repeat(65), 1000), "never longer than the wire allows");
    assert!(!valid_name("ümlaut", MAX_NAME));
}

/// The delivery-service messages are byte for byte what PROTOCOL.md §13.11
/// lays out.
#[test]
fn delivery_service_layouts_are_as_specified() {
    let commit = ClientMessage::Group(GroupRequest::Commit(CommitRequest {
        request: 7,
        group_id: vec![0xaa, 0xbb],
        epoch: 3,
        external: false,
        commit: vec![1, 2, 3],
        welcome: None,
        group_info: Some(vec![9]),
        invited: vec!["bob".into()],
        removed: vec![],
    }));
    let mut want = vec![0x15];
    want.extend(7u64.to_be_bytes());
    want.extend([2, 0xaa, 0xbb]);
    want.extend(3u64.to_be_bytes());
    want.push(0);
    want.extend([0, 0, 0, 3, 1, 2, 3]);
    want.extend([0, 0, 0, 0]);
    want.extend([0, 0, 0, 1, 9]);
    want.extend([0, 1, 3, b'b', b'o', b'b']);
    want.extend([0, 0]);
    assert_eq!(&commit.encode().unwrap()[4..], &want[..]);

    let delivery = ServerMessage::Group(GroupEvent::Message(GroupDelivery {
        id: 1,
        timestamp_ms: 2,
        from: "al".into(),
        group_id: vec![5],
        room: None,
        kind: PayloadKind::Application,
        epoch: 0,
        payload: vec![0xee],
        seq: 9,
    }));
    let mut want = vec![0x99];
    want.extend(1u64.to_be_bytes());
    want.extend(2u64.to_be_bytes());
    want.extend([2, b'a', b'l', 1, 5, 0, 3]);
    want.extend(0u64.to_be_bytes());
    want.extend([0, 0, 0, 1, 0xee]);
    want.extend(9u64.to_be_bytes());
    let bytes = delivery.encode().unwrap();
    assert_eq!(&bytes[4..], &want[..]);
    // The stored-queue machinery fills `seq` in as the last eight bytes.
    assert_eq!(&bytes[bytes.len() - 8..], &9u64.to_be_bytes());

    let upload = ClientMessage::Group(GroupRequest::KeyPackages { last_resort: true, packages: vec![vec![7; 2]] });
    assert_eq!(&upload.encode().unwrap()[4..], &[0x12, 1, 1, 0, 2, 7, 7]);
    let info = ServerMessage::Group(GroupEvent::RoomInfo {
        room: "r".into(),
        kind: None,
        group_id: vec![],
        epoch: 0,
        admins: vec![],
    });
    let mut want = vec![0x97, 1, b'r', 0xff, 0];
    want.extend(0u64.to_be_bytes());
    want.extend([0, 0]);
    assert_eq!(&info.encode().unwrap()[4..], &want[..]);
    // Zero or more than sixteen packages, and an unknown room kind, are refused.
    assert!(ClientMessage::decode(&[0x12, 0, 0]).is_err());
    assert!(ClientMessage::decode(&[0x14, 1, b'r', 3, 0]).is_err());
}

/// The blob messages of PROTOCOL.md §13.12, byte for byte.
#[test]
fn blob_messages_have_the_specified_layout() {
    let blob = [0xb0; 16];
    let upload = ClientMessage::Blob(BlobRequest::Upload { request: 1, blob, group_id: vec![5, 6], size: 70_000 });
    let mut want = vec![0x19];
    want.extend(1u64.to_be_bytes());
    want.extend(blob);
    want.extend([2, 5, 6]);
    want.extend(70_000u64.to_be_bytes());
    assert_eq!(&upload.encode().unwrap()[4..], &want[..]);

    let chunk = ClientMessage::Blob(BlobRequest::Chunk { blob, offset: 16384, data: vec![9, 8] });
    let mut want = vec![0x1a];
    want.extend(blob);
    want.extend(16384u64.to_be_bytes());
    want.extend([0, 2, 9, 8]);
    assert_eq!(&chunk.encode().unwrap()[4..], &want[..]);

    let fetch = ClientMessage::Blob(BlobRequest::Fetch { request: 2, blob, offset: 3, max: 1 << 20 });
    let mut want = vec![0x1b];
    want.extend(2u64.to_be_bytes());
    want.extend(blob);
    want.extend(3u64.to_be_bytes());
    want.extend([0, 0x10, 0, 0]);
    assert_eq!(&fetch.encode().unwrap()[4..], &want[..]);

    let delete = ClientMessage::Blob(BlobRequest::Delete { request: 4, blob });
    let mut want = vec![0x1c];
    want.extend(4u64.to_be_bytes());
    want.extend(blob);
    assert_eq!(&delete.encode().unwrap()[4..], &want[..]);

    let state = ServerMessage::Blob(BlobEvent::State {
        request: 0,
        blob,
        status: BlobStatus::Complete,
        size: 70_000,
        stored: 70_000,
    });
    let mut want = vec![0x9a];
    want.extend(0u64.to_be_bytes());
    want.extend(blob);
    want.push(1);
    want.extend(70_000u64.to_be_bytes());
    want.extend(70_000u64.to_be_bytes());
    assert_eq!(&state.encode().unwrap()[4..], &want[..]);

    let data = ServerMessage::Blob(BlobEvent::Data { request: 2, blob, offset: 3, data: vec![7] });
    let mut want = vec![0x9b];
    want.extend(2u64.to_be_bytes());
    want.extend(blob);
    want.extend(3u64.to_be_bytes());
    want.extend([0, 1, 7]);
    assert_eq!(&data.encode().unwrap()[4..], &want[..]);

    // Refused: empty data, a blob under 16 bytes, a fetch of 0 or over
    // 1 MiB, an unknown status, a short blob id.
    let mut empty = vec![0x1a];
    empty.extend(blob);
    empty.extend(0u64.to_be_bytes());
    empty.extend([0, 0]);
    assert!(ClientMessage::decode(&empty).is_err());
    let mut small = vec![0x19];
    small.extend(1u64.to_be_bytes());
    small.extend(blob);
    small.push(0);
    small.extend(15u64.to_be_bytes());
    assert!(ClientMessage::decode(&small).is_err());
    let encoded = fetch.encode().unwrap();
    let mut zero = encoded[4..].to_vec();
    let n = zero.len();
    zero[n - 4..].copy_from_slice(&0u32.to_be_bytes());
    assert!(ClientMessage::decode(&zero).is_err());
    zero[n - 4..].copy_from_slice(&((1u32 << 20) + 1).to_be_bytes());
    assert!(ClientMessage::decode(&zero).is_err());
    let mut status = state.encode().unwrap()[4..].to_vec();
    status[25] = 3;
    assert!(ServerMessage::decode(&status).is_err());
    assert!(ClientMessage::decode(&[0x1c, 0, 0, 0, 0, 0, 0, 0, 4, 0xb0]).is_err());
    assert!(BlobRequest::Upload { request: 1, blob, group_id: vec![], size: 15 }.request() == 1);
    assert_eq!(ErrorCode::from_u16(22), ErrorCode::BlobQuota);
    assert_eq!(ErrorCode::from_u16(23), ErrorCode::NoBlob);
}
