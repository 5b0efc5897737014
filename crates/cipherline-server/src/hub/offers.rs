//! The hub's side of version-1 file transfers (PROTOCOL.md §13.6): offers,
//! answers, chunks, ends, cancels and acknowledgements between live
//! sessions, under the same queue bounds as messages.

use super::*;

impl Hub {
    /// Offers a file to a user or to the other members of a room; `admit`
    /// is told the number of recipients, as for [`Hub::send`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn file_offer(
        &self,
        me: &Me,
        transfer: u64,
        to: Target,
        name: String,
        size: u64,
        limits: &OfferLimits,
        admit: impl FnOnce(usize) -> Result<(), Refusal>,
    ) -> Result<(), OfferError> {
        if !transfer::valid_file_name(&name) {
            return Err(OfferError::Refused((
                ErrorCode::InvalidName,
                "file names are 1 to 255 bytes without '/', '\\', control, bidi or other format characters, and not '.' \
                 or '..'"
                    .into(),
            )));
        }
        let from = me.name.as_str();
        let mut guard = self.lock();
        let state = &mut *guard;
        let expired = state.transfers.expire(Instant::now());
        state.deliver_all(&expired);
        // Routed by the folded names; the offer keeps the target as the
        // sender wrote it, which its signature covers (§13.7).
        let route = match &to {
            Target::User(user) => Target::User(Self::resolve(state, user).unwrap_or_else(|| user.clone())),
            Target::Room(room) => Target::Room(fold_name(room)),
        };
        // Each recipient name with the sessions that get the offer: all of
        // a user's, or a member's sessions that are in the room.
        let recipients: BTreeMap<String, BTreeSet<u64>> = match &route {
            Target::User(user) if user == from => {
                return Err(OfferError::Refused((
                    ErrorCode::UnknownUser,
                    "you cannot offer a file to yourself".into(),
                )));
            }
            Target::User(user) if state.users.contains_key(user) => {
                let sessions = state.users.get(user).map(|p| p.sessions.iter().map(|s| s.id).collect());
                BTreeMap::from([(user.clone(), sessions.unwrap_or_default())])
            }
            Target::User(user) => {
                return Err(OfferError::Refused((
                    ErrorCode::UnknownUser,
                    self.not_here(&format!("no user named {user:?} is connected")),
                )));
            }
            Target::Room(room) => {
                if !state.may_speak(me, room) {
                    return Err(OfferError::Refused(not_in_room(room)));
                }
                // A stored member is offered the file on every connection.
                let stored = state.stored_members.get(room);
                let in_room = |n: &String| -> BTreeSet<u64> {
                    let all = stored.is_some_and(|m| m.contains(&fold_name(n)));
                    let sessions = state.users.get(n).map(|p| p.sessions.as_slice()).unwrap_or_default();
                    sessions.iter().filter(|s| all || s.rooms.contains(room)).map(|s| s.id).collect()
                };
                // Connected members, by the names they are connected under.
                let mut members: BTreeSet<&String> = state.rooms.get(room).into_iter().flatten().collect();
                members.extend(stored.into_iter().flatten().filter_map(|n| state.by_fold.get(n)));
                let sender = fold_name(from);
                let others: BTreeMap<String, BTreeSet<u64>> =
                    members.into_iter().filter(|n| fold_name(n) != sender).map(|n| (n.clone(), in_room(n))).collect();
                if others.is_empty() {
                    return Err(OfferError::Refused((
                        ErrorCode::UnknownUser,
                        self.not_here(&format!("nobody else is in room {room:?} to offer the file to")),
                    )));
                }
                others
            }
        };
        let count = recipients.len();
        if !state.backlog.bulk_ok() {
            return Err(OfferError::Refused(busy()));
        }
        admit(count).map_err(OfferError::Refused)?;
        let fanout =
            state.transfers.offer((from, me.session), transfer, to, name, size, recipients, limits, Instant::now())?;
        // File names are user content: logs carry only ids and sizes.
        tracing::debug!(from, transfer, size, recipients = count, "file offered");
        state.deliver_all(&[fanout]);
        Ok(())
    }

    /// A receiving connection accepts or declines an offer.
    pub(crate) fn file_answer(&self, me: &Me, sender: &str, transfer: u64, accept: bool) {
        let mut state = self.lock();
        // An answer after the deadline finds the offer expired.
        let expired = state.transfers.expire(Instant::now());
        state.deliver_all(&expired);
        let sender = Self::resolve(&state, sender).unwrap_or_else(|| sender.to_owned());
        let out = state.transfers.answer((&me.name, me.session), &sender, transfer, accept);
        state.deliver_all(&out);
    }

    /// Relays a chunk of a transfer's data (or ends the transfer if the
    /// chunk breaks the size or flow-control rules).
    pub(crate) fn file_chunk(&self, me: &Me, transfer: u64, data: Vec<u8>) {
        let from = me.name.as_str();
        let mut guard = self.lock();
        let state = &mut *guard;
        match state.transfers.chunk((from, me.session), transfer, data) {
            Chunk::Dropped => {}
            Chunk::Relay(fanout) => state.relay_chunk(from, transfer, &fanout),
            Chunk::Cancelled(out) => {
                tracing::info!(from, transfer, "file transfer cancelled: the sender broke the size or window rule");
                state.deliver_all(&out);
            }
        }
    }

    /// The sender finished a transfer; up to `max_finished` of its finished
    /// transfers wait for the receivers' receipts.
    pub(crate) fn file_end(
        &self,
        me: &Me,
        transfer: u64,
        sha256: [u8; 32],
        signature: Option<Vec<u8>>,
        max_finished: usize,
    ) {
        let from = me.name.as_str();
        let mut state = self.lock();
        // As for messages: the signature goes out with the key the sender
        // proved (PROTOCOL.md §13.7); one from a client without a key is dropped.
        let key = state.users.get(from).and_then(|p| p.key.clone());
        let signed = match (signature, key) {
            (Some(signature), Some((algorithm, sender_key))) => Some(FileSigned { algorithm, sender_key, signature }),
            _ => None,
        };
        let out = state.transfers.end((from, me.session), transfer, sha256, signed, max_finished);
        if !out.is_empty() {
            tracing::debug!(from, transfer, "file transfer finished");
        }
        state.deliver_all(&out);
    }

    /// FileCancel: an empty `sender` means `me` is the sender and stops its
    /// transfer for everyone; otherwise `me` stops receiving `sender`'s.
    pub(crate) fn file_cancel(&self, me: &Me, sender: &str, transfer: u64, reason: String) {
        let by = me.name.as_str();
        let mut state = self.lock();
        let out = if sender.is_empty() {
            state.transfers.cancel_by_sender((by, me.session), transfer, reason)
        } else {
            let sender = Self::resolve(&state, sender).unwrap_or_else(|| sender.to_owned());
            state.transfers.cancel_by_receiver((by, me.session), &sender, transfer, reason)
        };
        if !out.is_empty() {
            tracing::debug!(by, transfer, "file transfer cancelled");
        }
        state.deliver_all(&out);
    }

    /// A receiver acknowledges stored data.
    pub(crate) fn file_ack(&self, me: &Me, sender: &str, transfer: u64, received: u64) {
        let mut state = self.lock();
        let sender = Self::resolve(&state, sender).unwrap_or_else(|| sender.to_owned());
        let out = state.transfers.ack((&me.name, me.session), &sender, transfer, received);
        state.deliver_all(&out);
    }

    /// Ends the offers nobody answered in time (§13.6).
    pub(crate) fn expire_offers(&self) {
        let mut state = self.lock();
        let out = state.transfers.expire(Instant::now());
        if !out.is_empty() {
            tracing::debug!(messages = out.len(), "file offers expired");
        }
        state.deliver_all(&out);
    }

    /// File transfers in progress (for logs).
    pub(crate) fn transfer_count(&self) -> usize {
        self.lock().transfers.len()
    }
}

/// Expires unanswered file offers once a second until `stop`.
pub(crate) async fn expire_offers(hub: Arc<Hub>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => hub.expire_offers(),
            () = stop.cancelled() => return,
        }
    }
}
