//! Encoding and decoding of server-to-client messages (PROTOCOL.md §13.3),
//! as strict as the client side's in `app.rs`: bounded lengths, valid
//! UTF-8, known enumerations, no trailing bytes.

use super::*;

impl ServerMessage {
    /// Encodes the message with its length prefix.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        match self {
            ServerMessage::Welcome { name, max_message, idle_timeout_secs, rates, queue } => {
                w.u8(0x81);
                put_name(&mut w, name)?;
                w.bytes(&max_message.to_be_bytes());
                w.bytes(&idle_timeout_secs.to_be_bytes());
                w.bytes(&rates.messages_per_sec.to_be_bytes());
                w.bytes(&rates.burst.to_be_bytes());
                put_u64(&mut w, rates.bytes_per_sec);
                put_u64(&mut w, rates.bytes_burst);
                match queue {
                    None => w.u8(0),
                    Some(q) => {
                        w.u8(1);
                        w.bytes(&q.ttl_secs.to_be_bytes());
                        w.bytes(&q.max_messages.to_be_bytes());
                        put_u64(&mut w, q.max_bytes);
                    }
                }
            }
            ServerMessage::Joined { room } => {
                w.u8(0x82);
                put_name(&mut w, room)?;
            }
            ServerMessage::Left { room } => {
                w.u8(0x83);
                put_name(&mut w, room)?;
            }
            ServerMessage::Message(d) => {
                w.u8(0x84);
                put_u64(&mut w, d.id);
                put_u64(&mut w, d.timestamp_ms);
                put_name(&mut w, &d.from)?;
                put_target(&mut w, &d.to)?;
                put_text(&mut w, &d.text)?;
                match &d.signed {
                    None => w.u8(0),
                    Some(sig) => {
                        w.u8(1);
                        put_u64(&mut w, sig.client_id);
                        put_u64(&mut w, sig.sent_at_ms);
                        w.u16(sig.algorithm);
                        w.vec16(&sig.sender_key, MAX_SPKI_LEN)?;
                        w.vec16(&sig.signature, MAX_SIGNATURE_LEN)?;
                    }
                }
                // Last, so a relay can fill it in without re-encoding.
                put_u64(&mut w, d.seq);
            }
            ServerMessage::Identity { name, algorithm, key } => {
                w.u8(0x90);
                put_name(&mut w, name)?;
                w.u16(*algorithm);
                w.vec16(key, MAX_SPKI_LEN)?;
            }
            ServerMessage::Ack { client_id, id, timestamp_ms, queued, live, full } => {
                w.u8(0x85);
                put_u64(&mut w, *client_id);
                put_u64(&mut w, *id);
                put_u64(&mut w, *timestamp_ms);
                w.bytes(&queued.to_be_bytes());
                w.bytes(&live.to_be_bytes());
                w.bytes(&full.to_be_bytes());
            }
            ServerMessage::Delivered { id, by } => {
                w.u8(0x91);
                put_u64(&mut w, *id);
                put_name(&mut w, by)?;
            }
            ServerMessage::Expired { id, to, seq } => {
                w.u8(0x92);
                put_u64(&mut w, *id);
                put_name(&mut w, to)?;
                // Last, as in Message, so a relay can fill it in.
                put_u64(&mut w, *seq);
            }
            ServerMessage::Notice { kind, room, name } => {
                w.u8(0x86);
                w.u8(match kind {
                    NoticeKind::Joined => 0,
                    NoticeKind::Left => 1,
                });
                put_name(&mut w, room)?;
                put_name(&mut w, name)?;
            }
            ServerMessage::Members { room, names } => {
                w.u8(0x87);
                put_name(&mut w, room)?;
                let count = u16::try_from(names.len())
                    .ok()
                    .filter(|&c| usize::from(c) <= MAX_MEMBERS)
                    .ok_or(Error::ApiMisuse("too many members"))?;
                w.u16(count);
                for n in names {
                    put_name(&mut w, n)?;
                }
            }
            ServerMessage::Error { code, client_id, text } => {
                w.u8(0x88);
                w.u16(code.to_u16());
                put_u64(&mut w, *client_id);
                put_text(&mut w, text)?;
            }
            ServerMessage::Pong { nonce } => {
                w.u8(0x89);
                put_u64(&mut w, *nonce);
            }
            ServerMessage::FileOffered { transfer, from, to, name, size } => {
                w.u8(0x8a);
                put_u64(&mut w, *transfer);
                put_name(&mut w, from)?;
                put_target(&mut w, to)?;
                w.vec8(name.as_bytes(), MAX_FILE_NAME)?;
                put_u64(&mut w, *size);
            }
            ServerMessage::FileAnswered { transfer, by, accept } => {
                w.u8(0x8b);
                put_u64(&mut w, *transfer);
                put_name(&mut w, by)?;
                w.u8(u8::from(*accept));
            }
            ServerMessage::FileData { transfer, from, data } => {
                w.u8(0x8c);
                put_u64(&mut w, *transfer);
                put_name(&mut w, from)?;
                put_data(&mut w, data)?;
            }
            ServerMessage::FileDone { transfer, from, sha256, signed } => {
                w.u8(0x8d);
                put_u64(&mut w, *transfer);
                put_name(&mut w, from)?;
                w.bytes(sha256);
                match signed {
                    None => w.u8(0),
                    Some(sig) => {
                        w.u8(1);
                        w.u16(sig.algorithm);
                        w.vec16(&sig.sender_key, MAX_SPKI_LEN)?;
                        w.vec16(&sig.signature, MAX_SIGNATURE_LEN)?;
                    }
                }
            }
            ServerMessage::FileCancelled { transfer, sender, by, reason } => {
                w.u8(0x8e);
                put_u64(&mut w, *transfer);
                put_name(&mut w, sender)?;
                put_name(&mut w, by)?;
                put_text(&mut w, reason)?;
            }
            ServerMessage::FileAcked { transfer, by, received } => {
                w.u8(0x8f);
                put_u64(&mut w, *transfer);
                put_name(&mut w, by)?;
                put_u64(&mut w, *received);
            }
            ServerMessage::Group(g) => g.encode_into(&mut w)?,
            ServerMessage::Blob(b) => b.encode_into(&mut w)?,
        }
        frame(w)
    }

    /// Decodes one message (type byte and body, without the length prefix).
    pub fn decode(msg: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(msg);
        let m = match r.u8()? {
            0x81 => ServerMessage::Welcome {
                name: get_name(&mut r)?,
                max_message: u32::from_be_bytes(r.array()?),
                idle_timeout_secs: u32::from_be_bytes(r.array()?),
                rates: RateLimits {
                    messages_per_sec: u32::from_be_bytes(r.array()?),
                    burst: u32::from_be_bytes(r.array()?),
                    bytes_per_sec: get_u64(&mut r)?,
                    bytes_burst: get_u64(&mut r)?,
                },
                queue: match r.u8()? {
                    0 => None,
                    1 => Some(QueueLimits {
                        ttl_secs: u32::from_be_bytes(r.array()?),
                        max_messages: u32::from_be_bytes(r.array()?),
                        max_bytes: get_u64(&mut r)?,
                    }),
                    _ => return Err(DecodeError::IllegalValue),
                },
            },
            0x82 => ServerMessage::Joined { room: get_name(&mut r)? },
            0x83 => ServerMessage::Left { room: get_name(&mut r)? },
            0x84 => ServerMessage::Message(Delivery {
                id: get_u64(&mut r)?,
                timestamp_ms: get_u64(&mut r)?,
                from: get_name(&mut r)?,
                to: get_target(&mut r)?,
                text: get_text(&mut r)?,
                signed: match r.u8()? {
                    0 => None,
                    1 => Some(Signed {
                        client_id: get_u64(&mut r)?,
                        sent_at_ms: get_u64(&mut r)?,
                        algorithm: r.u16()?,
                        sender_key: r.vec16(MAX_SPKI_LEN)?.to_vec(),
                        signature: r.vec16(MAX_SIGNATURE_LEN)?.to_vec(),
                    }),
                    _ => return Err(DecodeError::IllegalValue),
                },
                seq: get_u64(&mut r)?,
            }),
            0x90 => ServerMessage::Identity {
                name: get_name(&mut r)?,
                algorithm: r.u16()?,
                key: r.vec16(MAX_SPKI_LEN)?.to_vec(),
            },
            0x85 => ServerMessage::Ack {
                client_id: get_u64(&mut r)?,
                id: get_u64(&mut r)?,
                timestamp_ms: get_u64(&mut r)?,
                queued: u32::from_be_bytes(r.array()?),
                live: u32::from_be_bytes(r.array()?),
                full: u32::from_be_bytes(r.array()?),
            },
            0x91 => ServerMessage::Delivered { id: get_u64(&mut r)?, by: get_name(&mut r)? },
            0x92 => ServerMessage::Expired { id: get_u64(&mut r)?, to: get_name(&mut r)?, seq: get_u64(&mut r)? },
            0x86 => {
                let kind = match r.u8()? {
                    0 => NoticeKind::Joined,
                    1 => NoticeKind::Left,
                    _ => return Err(DecodeError::IllegalValue),
                };
                ServerMessage::Notice { kind, room: get_name(&mut r)?, name: get_name(&mut r)? }
            }
            0x87 => {
                let room = get_name(&mut r)?;
                let count = usize::from(r.u16()?);
                if count > MAX_MEMBERS {
                    return Err(DecodeError::FieldTooLong);
                }
                // Each name takes at least one byte, so `count` is bounded by
                // the bytes actually present before anything is allocated.
                if count > r.remaining() {
                    return Err(DecodeError::Truncated);
                }
                let mut names = Vec::with_capacity(count);
                for _ in 0..count {
                    names.push(get_name(&mut r)?);
                }
                ServerMessage::Members { room, names }
            }
            0x88 => ServerMessage::Error {
                code: ErrorCode::from_u16(r.u16()?),
                client_id: get_u64(&mut r)?,
                text: get_text(&mut r)?,
            },
            0x89 => ServerMessage::Pong { nonce: get_u64(&mut r)? },
            0x8a => ServerMessage::FileOffered {
                transfer: get_u64(&mut r)?,
                from: get_name(&mut r)?,
                to: get_target(&mut r)?,
                name: utf8(r.vec8(MAX_FILE_NAME)?)?,
                size: get_u64(&mut r)?,
            },
            0x8b => ServerMessage::FileAnswered {
                transfer: get_u64(&mut r)?,
                by: get_name(&mut r)?,
                accept: get_bool(&mut r)?,
            },
            0x8c => {
                ServerMessage::FileData { transfer: get_u64(&mut r)?, from: get_name(&mut r)?, data: get_data(&mut r)? }
            }
            0x8d => ServerMessage::FileDone {
                transfer: get_u64(&mut r)?,
                from: get_name(&mut r)?,
                sha256: r.array()?,
                signed: match r.u8()? {
                    0 => None,
                    1 => Some(FileSigned {
                        algorithm: r.u16()?,
                        sender_key: r.vec16(MAX_SPKI_LEN)?.to_vec(),
                        signature: r.vec16(MAX_SIGNATURE_LEN)?.to_vec(),
                    }),
                    _ => return Err(DecodeError::IllegalValue),
                },
            },
            0x8e => ServerMessage::FileCancelled {
                transfer: get_u64(&mut r)?,
                sender: get_name(&mut r)?,
                by: get_name(&mut r)?,
                reason: get_text(&mut r)?,
            },
            0x8f => ServerMessage::FileAcked {
                transfer: get_u64(&mut r)?,
                by: get_name(&mut r)?,
                received: get_u64(&mut r)?,
            },
            t @ 0x93..=0x99 => ServerMessage::Group(GroupEvent::decode_body(t, &mut r)?),
            t @ 0x9a..=0x9b => ServerMessage::Blob(BlobEvent::decode_body(t, &mut r)?),
            _ => return Err(DecodeError::UnknownMessageType),
        };
        r.finish()?;
        Ok(m)
    }
}
