//! Property tests for the application codec (PROTOCOL.md §13) and the
//! public-key decoders peers feed: every message round-trips; any byte
//! string either decodes to a message that re-encodes to exactly those
//! bytes, or is refused, and never panics; no strict prefix and no
//! extension of a valid message decodes; the stream decoder cuts any
//! split of a stream into the same messages and refuses lengths over its
//! limit before buffering them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use cipherline_proto::app::{
    BlobEvent, BlobRequest, BlobStatus, ClientMessage, CommitRequest, Delivery, ErrorCode, FileSigned, GroupDelivery,
    GroupEvent, GroupRequest, MAX_CHUNK, MessageDecoder, NoticeKind, PayloadKind, QueueLimits, RateLimits, RoomKind,
    SendSignature, ServerMessage, Signed, Target,
};
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::sign::{IdentityPublicKey, SignatureAlgorithm};
use proptest::collection::vec;
use proptest::prelude::*;

/// Names and rooms: any UTF-8 up to the wire bound of 64 bytes (the server
/// is stricter; the codec carries any).
fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9._-]{0,16}", "\\PC{0,12}"].prop_filter("at most 64 bytes", |s| s.len() <= 64)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,40}", Just("x".repeat(5000))]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![name().prop_map(Target::Room), name().prop_map(Target::User)]
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..64), Just(vec![0xa5; MAX_CHUNK])]
}

fn file_name() -> impl Strategy<Value = String> {
    "\\PC{0,40}".prop_filter("at most 255 bytes", |s| s.len() <= 255)
}

fn opaque() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 1..64), Just(vec![0x5a; 70_000])]
}

fn group_id() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=255)
}

fn names() -> impl Strategy<Value = Vec<String>> {
    vec(name(), 0..5)
}

fn room_kind() -> impl Strategy<Value = RoomKind> {
    prop_oneof![Just(RoomKind::Open), Just(RoomKind::Invite), Just(RoomKind::Public)]
}

fn group_request() -> impl Strategy<Value = GroupRequest> {
    let commit = (
        (any::<u64>(), group_id(), any::<u64>(), any::<bool>(), opaque()),
        (proptest::option::of(opaque()), proptest::option::of(opaque()), names(), names()),
    )
        .prop_map(|((request, group_id, epoch, external, commit), (welcome, group_info, invited, removed))| {
            GroupRequest::Commit(CommitRequest {
                request,
                group_id,
                epoch,
                external,
                commit,
                welcome,
                group_info,
                invited,
                removed,
            })
        });
    prop_oneof![
        (any::<bool>(), vec(vec(any::<u8>(), 0..100), 1..=16))
            .prop_map(|(last_resort, packages)| GroupRequest::KeyPackages { last_resort, packages }),
        name().prop_map(|user| GroupRequest::Claim { user }),
        (name(), room_kind(), group_id()).prop_map(|(room, kind, group_id)| GroupRequest::CreateRoom {
            room,
            kind,
            group_id
        }),
        commit,
        (any::<u64>(), group_id(), opaque()).prop_map(|(id, group_id, payload)| GroupRequest::Send {
            id,
            group_id,
            payload
        }),
        name().prop_map(|room| GroupRequest::RoomInfo { room }),
        group_id().prop_map(|group_id| GroupRequest::GroupInfo { group_id }),
    ]
}

fn group_event() -> impl Strategy<Value = GroupEvent> {
    let kind = prop_oneof![Just(PayloadKind::Welcome), Just(PayloadKind::Commit), Just(PayloadKind::Application)];
    let room = proptest::option::of(name().prop_filter("non-empty", |n| !n.is_empty()));
    let delivery =
        ((any::<u64>(), any::<u64>(), name(), group_id()), (room, kind, any::<u64>(), opaque(), any::<u64>()))
            .prop_map(|((id, timestamp_ms, from, group_id), (room, kind, epoch, payload, seq))| {
                GroupEvent::Message(GroupDelivery { id, timestamp_ms, from, group_id, room, kind, epoch, payload, seq })
            });
    prop_oneof![
        (any::<u32>(), any::<bool>())
            .prop_map(|(available, last_resort)| GroupEvent::KeyPackageCount { available, last_resort }),
        (name(), vec(any::<u8>(), 0..100)).prop_map(|(user, key_package)| GroupEvent::KeyPackage { user, key_package }),
        (any::<u64>(), group_id(), any::<u64>()).prop_map(|(request, group_id, epoch)| GroupEvent::Committed {
            request,
            group_id,
            epoch
        }),
        (any::<u64>(), group_id(), any::<u64>()).prop_map(|(request, group_id, epoch)| GroupEvent::Stale {
            request,
            group_id,
            epoch
        }),
        (name(), proptest::option::of(room_kind()), group_id(), any::<u64>(), names()).prop_map(
            |(room, kind, group_id, epoch, admins)| GroupEvent::RoomInfo { room, kind, group_id, epoch, admins }
        ),
        (group_id(), any::<u64>(), vec(any::<u8>(), 0..100))
            .prop_map(|(group_id, epoch, group_info)| GroupEvent::GroupInfo { group_id, epoch, group_info }),
        delivery,
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    let signature = proptest::option::of(
        (any::<u64>(), vec(any::<u8>(), 0..80))
            .prop_map(|(sent_at_ms, signature)| SendSignature { sent_at_ms, signature }),
    );
    prop_oneof![
        name().prop_map(|name| ClientMessage::Hello { name }),
        name().prop_map(|room| ClientMessage::Join { room }),
        name().prop_map(|room| ClientMessage::Leave { room }),
        (any::<u64>(), target(), text(), signature).prop_map(|(id, to, text, signed)| ClientMessage::Send {
            id,
            to,
            text,
            signed
        }),
        name().prop_map(|room| ClientMessage::Who { room }),
        name().prop_map(|name| ClientMessage::Whois { name }),
        any::<u64>().prop_map(|nonce| ClientMessage::Ping { nonce }),
        Just(ClientMessage::Goodbye),
        (any::<u64>(), target(), file_name(), any::<u64>())
            .prop_map(|(transfer, to, name, size)| ClientMessage::FileOffer { transfer, to, name, size }),
        (any::<u64>(), name(), any::<bool>()).prop_map(|(transfer, sender, accept)| ClientMessage::FileAnswer {
            transfer,
            sender,
            accept
        }),
        (any::<u64>(), data()).prop_map(|(transfer, data)| ClientMessage::FileChunk { transfer, data }),
        (any::<u64>(), any::<[u8; 32]>(), proptest::option::of(vec(any::<u8>(), 0..80)))
            .prop_map(|(transfer, sha256, signature)| ClientMessage::FileEnd { transfer, sha256, signature }),
        (any::<u64>(), name(), text()).prop_map(|(transfer, sender, reason)| ClientMessage::FileCancel {
            transfer,
            sender,
            reason
        }),
        (any::<u64>(), name(), any::<u64>()).prop_map(|(transfer, sender, received)| ClientMessage::FileAck {
            transfer,
            sender,
            received
        }),
        any::<u64>().prop_map(|upto| ClientMessage::Received { upto }),
        any::<bool>().prop_map(|enabled| ClientMessage::Receipts { enabled }),
        any::<u64>().prop_map(|after| ClientMessage::Resume { after }),
        group_request().prop_map(ClientMessage::Group),
        blob_request().prop_map(ClientMessage::Blob),
    ]
}

fn blob_data() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 1..=MAX_CHUNK)
}

fn blob_request() -> impl Strategy<Value = BlobRequest> {
    prop_oneof![
        (any::<u64>(), any::<[u8; 16]>(), group_id(), 16u64..)
            .prop_map(|(request, blob, group_id, size)| { BlobRequest::Upload { request, blob, group_id, size } }),
        (any::<[u8; 16]>(), any::<u64>(), blob_data()).prop_map(|(blob, offset, data)| BlobRequest::Chunk {
            blob,
            offset,
            data
        }),
        (any::<u64>(), any::<[u8; 16]>(), any::<u64>(), 1u32..=1 << 20)
            .prop_map(|(request, blob, offset, max)| { BlobRequest::Fetch { request, blob, offset, max } }),
        (any::<u64>(), any::<[u8; 16]>()).prop_map(|(request, blob)| BlobRequest::Delete { request, blob }),
    ]
}

fn blob_event() -> impl Strategy<Value = BlobEvent> {
    let status = prop_oneof![Just(BlobStatus::Uploading), Just(BlobStatus::Complete), Just(BlobStatus::Gone)];
    prop_oneof![
        (any::<u64>(), any::<[u8; 16]>(), status, any::<u64>(), any::<u64>())
            .prop_map(|(request, blob, status, size, stored)| BlobEvent::State { request, blob, status, size, stored }),
        (any::<u64>(), any::<[u8; 16]>(), any::<u64>(), blob_data())
            .prop_map(|(request, blob, offset, data)| { BlobEvent::Data { request, blob, offset, data } }),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    // Through from_u16, so unknown codes are the ones the decoder makes.
    any::<u16>().prop_map(ErrorCode::from_u16)
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    let signed = proptest::option::of(
        (any::<u64>(), any::<u64>(), any::<u16>(), vec(any::<u8>(), 0..50), vec(any::<u8>(), 0..80)).prop_map(
            |(client_id, sent_at_ms, algorithm, sender_key, signature)| Signed {
                client_id,
                sent_at_ms,
                algorithm,
                sender_key,
                signature,
            },
        ),
    );
    let file_signed = proptest::option::of(
        (any::<u16>(), vec(any::<u8>(), 0..50), vec(any::<u8>(), 0..80))
            .prop_map(|(algorithm, sender_key, signature)| FileSigned { algorithm, sender_key, signature }),
    );
    prop_oneof![
        (
            name(),
            any::<u32>(),
            any::<u32>(),
            any::<(u32, u32, u64, u64)>(),
            proptest::option::of(any::<(u32, u32, u64)>())
        )
            .prop_map(
                |(
                    name,
                    max_message,
                    idle_timeout_secs,
                    (messages_per_sec, burst, bytes_per_sec, bytes_burst),
                    queue,
                )| {
                    ServerMessage::Welcome {
                        name,
                        max_message,
                        idle_timeout_secs,
                        rates: RateLimits { messages_per_sec, burst, bytes_per_sec, bytes_burst },
                        queue: queue.map(|(ttl_secs, max_messages, max_bytes)| QueueLimits {
                            ttl_secs,
                            max_messages,
                            max_bytes,
                        }),
                    }
                }
            ),
        name().prop_map(|room| ServerMessage::Joined { room }),
        name().prop_map(|room| ServerMessage::Left { room }),
        (any::<u64>(), any::<u64>(), name(), target(), text(), signed, any::<u64>()).prop_map(
            |(id, timestamp_ms, from, to, text, signed, seq)| ServerMessage::Message(Delivery {
                id,
                timestamp_ms,
                from,
                to,
                text,
                signed,
                seq
            })
        ),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<(u32, u32, u32)>()).prop_map(
            |(client_id, id, timestamp_ms, (queued, live, full))| ServerMessage::Ack {
                client_id,
                id,
                timestamp_ms,
                queued,
                live,
                full
            }
        ),
        (any::<u64>(), name()).prop_map(|(id, by)| ServerMessage::Delivered { id, by }),
        (any::<u64>(), name(), any::<u64>()).prop_map(|(id, to, seq)| ServerMessage::Expired { id, to, seq }),
        (any::<bool>(), name(), name()).prop_map(|(left, room, name)| ServerMessage::Notice {
            kind: if left { NoticeKind::Left } else { NoticeKind::Joined },
            room,
            name
        }),
        (name(), vec(name(), 0..20)).prop_map(|(room, names)| ServerMessage::Members { room, names }),
        (error_code(), any::<u64>(), text()).prop_map(|(code, client_id, text)| ServerMessage::Error {
            code,
            client_id,
            text
        }),
        any::<u64>().prop_map(|nonce| ServerMessage::Pong { nonce }),
        (name(), any::<u16>(), vec(any::<u8>(), 0..60)).prop_map(|(name, algorithm, key)| ServerMessage::Identity {
            name,
            algorithm,
            key
        }),
        (any::<u64>(), name(), target(), file_name(), any::<u64>()).prop_map(|(transfer, from, to, name, size)| {
            ServerMessage::FileOffered { transfer, from, to, name, size }
        }),
        (any::<u64>(), name(), any::<bool>()).prop_map(|(transfer, by, accept)| ServerMessage::FileAnswered {
            transfer,
            by,
            accept
        }),
        (any::<u64>(), name(), data()).prop_map(|(transfer, from, data)| ServerMessage::FileData {
            transfer,
            from,
            data
        }),
        (any::<u64>(), name(), any::<[u8; 32]>(), file_signed).prop_map(|(transfer, from, sha256, signed)| {
            ServerMessage::FileDone { transfer, from, sha256, signed }
        }),
        (any::<u64>(), name(), name(), text())
            .prop_map(|(transfer, sender, by, reason)| ServerMessage::FileCancelled { transfer, sender, by, reason }),
        (any::<u64>(), name(), any::<u64>()).prop_map(|(transfer, by, received)| ServerMessage::FileAcked {
            transfer,
            by,
            received
        }),
        group_event().prop_map(ServerMessage::Group),
        blob_event().prop_map(ServerMessage::Blob),
    ]
}

/// Every type byte in use, and any other, to start arbitrary bodies with.
fn type_byte() -> impl Strategy<Value = u8> {
    prop_oneof![1u8..=0x1c, 0x81u8..=0x9b, any::<u8>()]
}

/// Decodes `bytes` both ways; whatever decodes must re-encode to `bytes`.
fn assert_canonical(bytes: &[u8]) {
    if let Ok(m) = ClientMessage::decode(bytes) {
        assert_eq!(&m.encode().unwrap()[4..], bytes, "client message {m:?} is canonical");
    }
    if let Ok(m) = ServerMessage::decode(bytes) {
        assert_eq!(&m.encode().unwrap()[4..], bytes, "server message {m:?} is canonical");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn client_messages_round_trip_and_only_whole(m in client_message()) {
        let bytes = m.encode().unwrap();
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        prop_assert_eq!(len, bytes.len() - 4, "the length prefix counts type and body");
        let body = &bytes[4..];
        prop_assert_eq!(ClientMessage::decode(body).unwrap(), m);
        // No strict prefix decodes as a client message, nor does any extension.
        for cut in 1..body.len() {
            prop_assert!(ClientMessage::decode(&body[..cut]).is_err(), "prefix of {} bytes", cut);
        }
        prop_assert!(ClientMessage::decode(&[body, &[0]].concat()).is_err());
    }

    #[test]
    fn server_messages_round_trip_and_only_whole(m in server_message()) {
        let bytes = m.encode().unwrap();
        let body = &bytes[4..];
        prop_assert_eq!(ServerMessage::decode(body).unwrap(), m);
        for cut in 1..body.len().min(300) {
            prop_assert!(ServerMessage::decode(&body[..cut]).is_err(), "prefix of {} bytes", cut);
        }
        prop_assert!(ServerMessage::decode(&[body, &[0]].concat()).is_err());
    }

    #[test]
    fn any_bytes_decode_canonically_or_are_refused(ty in type_byte(), body in vec(any::<u8>(), 0..200)) {
        assert_canonical(&[&[ty][..], &body].concat());
        assert_canonical(&body);
    }

    #[test]
    fn mutated_messages_decode_canonically_or_are_refused(
        m in prop_oneof![client_message().prop_map(|m| m.encode().unwrap()), server_message().prop_map(|m| m.encode().unwrap())],
        edits in vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        // Real messages with a few bytes changed reach deeper than noise.
        let mut body = m[4..].to_vec();
        for (at, v) in edits {
            let i = at % body.len();
            body[i] = v;
        }
        assert_canonical(&body);
    }

    #[test]
    fn the_stream_decoder_ignores_how_the_stream_is_split(
        msgs in vec(client_message(), 1..6),
        cuts in vec(1usize..700, 1..20),
    ) {
        let stream: Vec<u8> = msgs.iter().flat_map(|m| m.encode().unwrap()).collect();
        let mut d = MessageDecoder::new(1 << 20);
        let (mut got, mut at, mut cut) = (Vec::new(), 0, cuts.iter().cycle());
        while at < stream.len() {
            let n = (*cut.next().unwrap()).min(stream.len() - at);
            d.push(&stream[at..at + n]);
            at += n;
            while let Some(m) = d.next_message().unwrap() {
                got.push(ClientMessage::decode(&m).unwrap());
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn the_stream_decoder_refuses_long_lengths_before_buffering(
        max in 1usize..100_000, len in any::<u32>(), tail in vec(any::<u8>(), 0..64),
    ) {
        let mut d = MessageDecoder::new(max);
        d.push(&len.to_be_bytes());
        d.push(&tail);
        match d.next_message() {
            Err(_) => prop_assert!(len == 0 || len as usize > max, "only a zero or over-limit length is refused"),
            Ok(None) => prop_assert!(len as usize > tail.len(), "incomplete means the bytes are not there yet"),
            Ok(Some(m)) => prop_assert_eq!(m.len(), len as usize),
        }
    }

    #[test]
    fn public_keys_from_peers_decode_canonically_or_are_refused(
        prefix in prop_oneof![
            Just(hex::decode("302a300506032b656e032100").unwrap()),
            Just(hex::decode("302a300506032b6570032100").unwrap()),
            Just(Vec::new()),
        ],
        rest in vec(any::<u8>(), 0..48),
    ) {
        // ServerIdentity's key and ClientAuth's key: one key, one encoding.
        let spki = [prefix, rest].concat();
        if let Ok(k) = ServerPublicKey::from_spki(&spki) {
            prop_assert_eq!(k.spki(), &spki[..]);
        }
        for alg in [SignatureAlgorithm::Ed25519, SignatureAlgorithm::RsaPssSha256] {
            if let Ok(k) = IdentityPublicKey::from_spki(alg, &spki) {
                prop_assert_eq!(k.spki(), &spki[..]);
            }
        }
    }
}
