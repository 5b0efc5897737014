//! What the server delivers: messages, end-to-end deliveries, notices.

use super::*;

impl<C: Connector> Engine<C> {
    /// Handles one server message.
    pub(super) async fn incoming(&mut self, live: &mut Live, msg: ServerMessage) -> Step {
        if self.once.holds(&msg) {
            return Step::Go;
        }
        let event = match msg {
            ServerMessage::Message(d) => {
                let status = live.peers.check(&d);
                return self.deliver(live, d, status, Sent::Relayed, None).await;
            }
            ServerMessage::Group(GroupEvent::Message(d)) => return self.group(live, &d).await,
            ServerMessage::Expired { id, to, seq } => return self.expired(live, id, to, seq).await,
            ServerMessage::Delivered { id, by } => Event::Delivered { id, by },
            ServerMessage::Notice { kind, room, name } => {
                Event::Membership { room, name, joined: kind == NoticeKind::Joined }
            }
            ServerMessage::Left { room } => {
                self.rooms.remove(&fold_name(&room));
                return Step::Go;
            }
            m @ (ServerMessage::FileOffered { .. }
            | ServerMessage::FileAnswered { .. }
            | ServerMessage::FileData { .. }
            | ServerMessage::FileDone { .. }
            | ServerMessage::FileCancelled { .. }
            | ServerMessage::FileAcked { .. }) => return self.offer_message(live, m).await,
            ServerMessage::Error { code, text, client_id } if !code.is_fatal() => {
                return self.offer_refused(live, client_id, &text).await.unwrap_or(Step::Go);
            }
            ServerMessage::Error { code, text, .. } if code.is_fatal() => {
                let e = ClientError::Refused { code, text };
                return Step::from_error(&e);
            }
            _ => return Step::Go,
        };
        if self.emit(event).await { Step::Go } else { Step::Stop("the front-end went away".to_owned()) }
    }

    /// An end-to-end delivery: decrypted, then handed over as a message or
    /// a group event.
    async fn group(&mut self, live: &mut Live, d: &GroupDelivery) -> Step {
        let Some(e2e) = &live.e2e else { return self.handled(live, d.seq).await };
        let outcome = match e2e.handle(d) {
            Ok(outcome) => outcome,
            // The local store failed: not acknowledged, so delivered again.
            Err(e) => return Step::Lost(e.to_string()),
        };
        if let Outcome::Message { from, key, target, text, notice, sent_at_ms } = outcome {
            let status = live.peers.check_key(&from, &IdentityPublicKey::ed25519_from_raw(&key));
            let delivery =
                Delivery { id: d.id, timestamp_ms: d.timestamp_ms, from, to: target, text, signed: None, seq: d.seq };
            // What the sender's counter says (messages missing, or out of
            // order) follows the message, before it is acknowledged.
            let notice = Some(notice).filter(|n| !n.is_empty());
            return self.deliver(live, delivery, status, Sent::EndToEnd(sent_at_ms), notice).await;
        }
        if let Outcome::File { .. } = outcome {
            return self.offered(live, d, outcome).await;
        }
        let Some((text, change)) = describe(outcome) else { return self.handled(live, d.seq).await };
        if !self.emit(Event::Group { id: d.id, text, change }).await {
            return Step::Stop("the front-end went away".to_owned());
        }
        self.handled(live, d.seq).await
    }

    /// Hands a message over once per id, records it, then acknowledges it.
    async fn deliver(
        &mut self,
        live: &mut Live,
        d: Delivery,
        status: MessageStatus,
        sent: Sent,
        notice: Option<String>,
    ) -> Step {
        let e2e = matches!(sent, Sent::EndToEnd(_));
        let (sent_ms, signed) = sent.vouched(&d, &status);
        let record = Msg::received(&self.server, &self.name, &d, &status).with_e2e(e2e);
        let before = live
            .peers
            .store()
            .is_some_and(|s| s.recorded_before(&record, self.since.unwrap_or(u64::MAX)).unwrap_or(false));
        if self.seen.contains(d.id) || before {
            return self.handled(live, d.seq).await;
        }
        self.people.saw(&d.from, &status);
        if matches!(status, MessageStatus::KeyChanged { .. })
            && !self.emit(Event::KeyChanged { id: d.id, name: d.from.clone() }).await
        {
            return Step::Stop("the front-end went away".to_owned());
        }
        let message = Message {
            id: d.id,
            from: d.from.clone(),
            to: d.to.clone(),
            text: d.text.clone(),
            e2e,
            verified: Verified::of(&status),
            new_key: match &status {
                MessageStatus::New(fingerprint) => Some(fingerprint.to_string()),
                _ => None,
            },
            timestamp_ms: d.timestamp_ms,
            sent_ms,
            signed,
        };
        if !self.emit(Event::Message(message)).await || !self.handed_over().await {
            return Step::Stop("the front-end went away".to_owned());
        }
        if let Some(text) = notice
            && !self.emit(Event::Group { id: d.id, text, change: GroupChange::Notice }).await
        {
            return Step::Stop("the front-end went away".to_owned());
        }
        self.seen.insert(d.id);
        if let Some(store) = live.peers.store() {
            // The history is a convenience: the message was handed over.
            let _ = store.record(&record);
        }
        self.handled(live, d.seq).await
    }

    /// A message of ours expired unread: said, confirmed like a message
    /// (so a front-end killed first hears of it again), then acknowledged.
    async fn expired(&mut self, live: &mut Live, id: u64, to: String, seq: u64) -> Step {
        if !self.emit(Event::Expired { id, to }).await || !self.handed_over().await {
            return Step::Stop("the front-end went away".to_owned());
        }
        self.handled(live, seq).await
    }

    /// A stored message was handed over: the relay may delete it.
    pub(super) async fn handled(&mut self, live: &mut Live, seq: u64) -> Step {
        let result = match live.client.handled(seq).await {
            Ok(()) => live.client.flush_received().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Step::Go,
            Err(e) => Step::from_error(&e),
        }
    }
}

/// How a message came: relayed (maybe signed), or end to end with the
/// sender's clock (`sent_at_ms`, authenticated by the group).
#[derive(Clone, Copy)]
enum Sent {
    Relayed,
    EndToEnd(u64),
}

impl Sent {
    /// The sender's time where something vouches for it, and whether the
    /// message was signed (or came end to end). A bad signature vouches
    /// for nothing: its time is the relay's word.
    fn vouched(self, d: &Delivery, status: &MessageStatus) -> (Option<u64>, bool) {
        match self {
            Sent::EndToEnd(at) => (Some(at), true),
            Sent::Relayed => match &d.signed {
                Some(s) if !matches!(status, MessageStatus::Invalid) => (Some(s.sent_at_ms), true),
                signed => (None, signed.is_some()),
            },
        }
    }
}

/// A line for a group outcome that is not a message (raw peer strings).
/// A group change for people, and as data; `None` for what is not one
/// (messages and files are handled before).
fn describe(outcome: Outcome) -> Option<(String, GroupChange)> {
    Some(match outcome {
        Outcome::Message { .. } | Outcome::File { .. } => return None,
        Outcome::Joined { target: Target::User(by), .. } => {
            (format!("{by} started an end-to-end conversation"), GroupChange::Started { by })
        }
        Outcome::Joined { target: Target::Room(room), members } => {
            (format!("added to {room} (members: {members})"), GroupChange::Added { room, members })
        }
        Outcome::Changed { by, target, summary } => (
            format!("{by} changed {}: {summary}", target_name(&target)),
            GroupChange::Changed { by, conversation: target, summary },
        ),
        Outcome::Removed { by, target } => (
            format!("{by} removed you from {}", target_name(&target)),
            GroupChange::Removed { by, conversation: target },
        ),
        Outcome::Failed { from, target, reason } => (
            format!("a message in {} from {from} could not be read: {reason}", target_name(&target)),
            GroupChange::Unreadable { from, conversation: target, reason },
        ),
    })
}

fn target_name(target: &Target) -> &str {
    match target {
        Target::Room(r) | Target::User(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_vouched_for_send_time_is_given_and_unsigned_is_told_apart() {
        let signed = cipherline_proto::app::Signed {
            client_id: 1,
            sent_at_ms: 77,
            algorithm: 0x0807,
            sender_key: vec![],
            signature: vec![],
        };
        let mut d = Delivery {
            id: 1,
            timestamp_ms: 99,
            from: "a".into(),
            to: Target::Room("r".into()),
            text: "t".into(),
            signed: Some(signed),
            seq: 0,
        };
        assert_eq!(Sent::Relayed.vouched(&d, &MessageStatus::Known), (Some(77), true));
        // A bad signature vouches for nothing, its time included.
        assert_eq!(Sent::Relayed.vouched(&d, &MessageStatus::Invalid), (None, true));
        assert_eq!(Sent::EndToEnd(55).vouched(&d, &MessageStatus::Known), (Some(55), true));
        d.signed = None;
        assert_eq!(Sent::Relayed.vouched(&d, &MessageStatus::Unsigned), (None, false));
    }

    #[test]
    fn group_changes_carry_their_data_beside_the_text() {
        let added = describe(Outcome::Joined { target: Target::Room("ops".into()), members: "a, b".into() });
        assert_eq!(
            added,
            Some((
                "added to ops (members: a, b)".to_owned(),
                GroupChange::Added { room: "ops".into(), members: "a, b".into() }
            ))
        );
        let started = describe(Outcome::Joined { target: Target::User("bob".into()), members: String::new() });
        assert_eq!(started.map(|(_, c)| c), Some(GroupChange::Started { by: "bob".into() }));
        // A name that looks like wording is data, never parsed back.
        let removed = describe(Outcome::Removed { by: "x removed you from".into(), target: Target::Room("r".into()) });
        assert_eq!(
            removed.map(|(_, c)| c),
            Some(GroupChange::Removed { by: "x removed you from".into(), conversation: Target::Room("r".into()) })
        );
    }
}
