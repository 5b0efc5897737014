//! The engine's commands: sending, joining, leaving. Sends, Joins and
//! RoomInfo are paced under the server's rate (engine/pace.rs).

use super::pace::paced;
use super::*;

impl<C: Connector> Engine<C> {
    /// Runs one command; the answer, and why the connection is lost if it is.
    pub(super) async fn command(
        &mut self,
        live: &mut Live,
        command: Command,
    ) -> (Result<Reply, ClientError>, Option<String>) {
        let answer = match command {
            Command::Status => Ok(Reply::Status(self.status(Some(live)))),
            Command::SendDirect { user, text } => self.send(live, Target::User(user), &text).await,
            Command::SendRoom { room, text } => self.send(live, Target::Room(room), &text).await,
            Command::Join(room) => self.join(live, &room).await,
            Command::Leave(room) => self.leave(live, &room).await,
            c @ (Command::History { .. } | Command::Conversations | Command::Contacts) => self.local(c),
            c @ (Command::Members(_) | Command::Whois(_) | Command::Verify { .. } | Command::Trust(_)) => {
                self.people_command(live, c).await
            }
            c @ (Command::Create { .. } | Command::Invite { .. } | Command::Kick { .. }) => {
                self.room_change(live, c).await
            }
            // Version-1 files (an open room, or no end-to-end engine; offer
            // ids and `o` transfers): engine/offers.rs.
            Command::SendFile { to, path } if self.sends_v1(live, &to) => self.send_offer(live, to, &path).await,
            Command::GetFile { id, dir } if is_offer_id(id) => self.get_offer(live, id, &dir).await,
            Command::CancelFile(transfer) if self.offers.owns(&transfer) => self.cancel_offer(live, &transfer).await,
            Command::DeclineFile(id) if is_offer_id(id) => self.decline_offer(live, id).await,
            Command::Files => self.files(live).map(|reply| match reply {
                Reply::Files(mut list) => {
                    list.extend(self.offers.list());
                    Reply::Files(list)
                }
                other => other,
            }),
            Command::SendFile { to, path } => self.send_file(live, to, &path).await,
            Command::GetFile { id, dir } => self.get_file(live, id, &dir),
            Command::CancelFile(transfer) => self.cancel_file(live, &transfer).await,
            Command::DeclineFile(id) => self.decline_file(live, id).await,
            Command::Rekey => live.client.rekey().await.map(|()| Reply::Done),
            Command::Session => Ok(Reply::Session(session(&live.client))),
            Command::KeyInfo(user) => Ok(self.key_info(live, &user)),
            Command::RoomInfo(room) => self.room_summary(live, &room).await,
            Command::Download(which) => self.download_info(live, &which),
            Command::Received(transfer) => self.received_file(&transfer),
            Command::RefuseFile { id, reason } => self.refuse_file(live, id, reason).await,
            c @ (Command::Prepare(_) | Command::SendAcked { .. } | Command::Receive | Command::Finish) => {
                self.once_command(live, c).await
            }
        };
        let lost = match &answer {
            Err(e) if passing(e) && !matches!(e, ClientError::Refused { .. }) => Some(e.to_string()),
            _ => None,
        };
        (answer, lost)
    }

    /// Sends one text and records it in the local history, as `send` and
    /// `chat` do (its id is then never notified as received).
    async fn send(&mut self, live: &mut Live, to: Target, text: &str) -> Result<Reply, ClientError> {
        let (acked, e2e) = send(live, to.clone(), text).await?;
        let (id, timestamp_ms) = (acked.id, acked.timestamp_ms);
        self.seen.insert(id);
        if let Some(store) = live.peers.store() {
            // The history is a convenience: the message was sent.
            let _ = store.record(&Msg::sent(&self.server, &self.name, id, timestamp_ms, &to, text).with_e2e(e2e));
        }
        Ok(Reply::Sent { id, e2e })
    }

    /// Joins a room. Every request here takes one of the server's message
    /// tokens like a text does, so after a pasted flood it may be refused
    /// as too fast: paced as sends are.
    async fn join(&mut self, live: &mut Live, room: &str) -> Result<Reply, ClientError> {
        let client = &mut live.client;
        if let Some(e2e) = &live.e2e
            && paced(&mut live.pace, async || client.room_info(room).await).await?.kind.is_some_and(RoomKind::is_e2e)
        {
            // An end-to-end room delivers through its group: not joined.
            // Another member's commit may win the epoch between reading
            // the group info and this join's commit: then the join is made
            // again, from the new group info.
            let mut tries = 0;
            while e2e.room_group(room)?.is_none() {
                match e2e.join_public(&mut live.client, room).await {
                    Ok(()) => break,
                    Err(ClientError::Stale { .. }) if tries < super::people::STALE_RETRIES => tries += 1,
                    Err(e) => return Err(e),
                }
            }
            return Ok(Reply::Done);
        }
        let client = &mut live.client;
        paced(&mut live.pace, async || client.join(room).await).await?;
        self.rooms.insert(fold_name(room), room.to_owned());
        Ok(Reply::Done)
    }
}

/// What `/fingerprint` shows of the connection in use.
fn session(client: &Client) -> SessionSummary {
    let info = client.info();
    let fingerprint = info.server_key.as_ref().map(cipherline_keys::Fingerprint::of_server_key);
    SessionSummary {
        name: info.name.clone(),
        suite: info.suite.to_string(),
        server_fingerprint: fingerprint.as_ref().map(ToString::to_string),
        server_short: fingerprint.as_ref().map(cipherline_keys::Fingerprint::short),
        handshake_hash: info.handshake_hash.iter().map(|b| format!("{b:02x}")).collect(),
        stored: info.queue.is_some(),
    }
}

/// Sends one text, end to end where `send` and `chat` would (a direct
/// message of a client with an end-to-end engine, a room whose group this
/// user is in), paced; the server's acknowledgement, and whether it went
/// end to end.
pub(super) async fn send(live: &mut Live, to: Target, text: &str) -> Result<(crate::Acked, bool), ClientError> {
    if let Some(e2e) = &live.e2e {
        let group = match &to {
            Target::User(user) => {
                let peers = &mut live.peers;
                let mut check = |name: &str, key: &[u8; 32]| match peers
                    .check_key(name, &IdentityPublicKey::ed25519_from_raw(key))
                {
                    MessageStatus::KeyChanged { .. } => Err(ClientError::EndToEnd(format!(
                        "the identity key of {} has changed: not sent; compare safety codes, then trust the new key",
                        crate::display::escape(name)
                    ))),
                    _ => Ok(()),
                };
                let client = &mut live.client;
                Some(paced(&mut live.pace, async || e2e.direct(client, user, &mut check).await).await?)
            }
            Target::Room(room) => e2e.room_group(room)?,
        };
        if let Some(group) = group {
            // Sealed once: a resend after `rate_limited` is the same message.
            let payload = e2e.seal(&group, text)?;
            let client = &mut live.client;
            let ack = paced(&mut live.pace, async || client.group_send_acked(&group, payload.clone()).await).await?;
            super::pace::update_if_due(&mut live.pace, e2e, &mut live.client, &group).await;
            return Ok((ack, true));
        }
    }
    let client = &mut live.client;
    let ack = paced(&mut live.pace, async || client.send_with_ack(to.clone(), text).await).await?;
    Ok((ack, false))
}
