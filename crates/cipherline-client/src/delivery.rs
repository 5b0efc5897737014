//! Requests to the relay's delivery service for end-to-end conversations
//! (PROTOCOL.md §13.11): upload and claim KeyPackages, create rooms, submit
//! commits for sequencing, send MLS messages, ask about rooms and groups.
//! Each waits for its answer within the client's reply timeout; messages
//! arriving meanwhile are kept for [`Client::recv`].

use cipherline_proto::app::{ClientMessage, CommitRequest, GroupEvent, GroupRequest, RoomKind, ServerMessage};

use crate::client::{Acked, Client};
use crate::error::ClientError;

/// The relay's answer to a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Accepted: the group is now at this epoch; apply the commit.
    Committed(u64),
    /// Another commit won the epoch: the group is at this epoch already,
    /// and the commits that brought it there are in this user's queue.
    Stale(u64),
}

/// What a room is, as the relay says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// Its kind; `None`: no such room.
    pub kind: Option<RoomKind>,
    /// Its MLS group (empty for an open room).
    pub group_id: Vec<u8>,
    /// The group's epoch at the relay.
    pub epoch: u64,
    /// Who may invite and remove.
    pub admins: Vec<String>,
}

fn group(msg: ServerMessage) -> Result<GroupEvent, ClientError> {
    match msg {
        ServerMessage::Group(event) => Ok(event),
        _ => Err(ClientError::Unexpected),
    }
}

impl Client {
    async fn request(&mut self, request: GroupRequest) -> Result<(), ClientError> {
        self.send_message(&ClientMessage::Group(request)).await
    }

    /// Uploads KeyPackages of this client's own identity; returns how many
    /// one-time packages the relay holds now, and whether it holds a
    /// last-resort one.
    pub async fn upload_key_packages(
        &mut self,
        last_resort: bool,
        packages: Vec<Vec<u8>>,
    ) -> Result<(u32, bool), ClientError> {
        self.request(GroupRequest::KeyPackages { last_resort, packages }).await?;
        let want = |m: &ServerMessage| matches!(m, ServerMessage::Group(GroupEvent::KeyPackageCount { .. }));
        match group(self.reply(want, |_| false).await?)? {
            GroupEvent::KeyPackageCount { available, last_resort } => Ok((available, last_resort)),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Claims one KeyPackage of `user` (to add them to a group).
    pub async fn claim_key_package(&mut self, user: &str) -> Result<Vec<u8>, ClientError> {
        self.request(GroupRequest::Claim { user: user.to_owned() }).await?;
        let want =
            |m: &ServerMessage| matches!(m, ServerMessage::Group(GroupEvent::KeyPackage { user: u, .. }) if u == user);
        match group(self.reply(want, |_| false).await?)? {
            GroupEvent::KeyPackage { key_package, .. } => Ok(key_package),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Creates a room of `kind` (an end-to-end one for the MLS group
    /// `group_id`); waits for Joined.
    pub async fn create_room(&mut self, room: &str, kind: RoomKind, group_id: Vec<u8>) -> Result<(), ClientError> {
        self.request(GroupRequest::CreateRoom { room: room.to_owned(), kind, group_id }).await?;
        self.reply(|m| matches!(m, ServerMessage::Joined { room: r } if r == room), |_| false).await.map(drop)
    }

    /// Submits a commit for sequencing (its `request` is set here).
    pub async fn commit(&mut self, mut commit: CommitRequest) -> Result<CommitOutcome, ClientError> {
        let request = self.writer().next_id();
        commit.request = request;
        self.request(GroupRequest::Commit(commit)).await?;
        let want = |m: &ServerMessage| matches!(m, ServerMessage::Group(GroupEvent::Committed { request: r, .. } | GroupEvent::Stale { request: r, .. }) if *r == request);
        match group(self.reply(want, |c| c == request).await?)? {
            GroupEvent::Committed { epoch, .. } => Ok(CommitOutcome::Committed(epoch)),
            GroupEvent::Stale { epoch, .. } => Ok(CommitOutcome::Stale(epoch)),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Sends an MLS message to the other members of a group without
    /// waiting; returns the id its Ack (or Error) will carry.
    pub async fn group_send(&mut self, group_id: &[u8], payload: Vec<u8>) -> Result<u64, ClientError> {
        let id = self.writer().next_id();
        self.request(GroupRequest::Send { id, group_id: group_id.to_vec(), payload }).await?;
        Ok(id)
    }

    /// Sends an MLS message to the other members of a group and waits for
    /// the relay's Ack.
    pub async fn group_send_acked(&mut self, group_id: &[u8], payload: Vec<u8>) -> Result<Acked, ClientError> {
        let id = self.group_send(group_id, payload).await?;
        match self.reply(|m| matches!(m, ServerMessage::Ack { client_id, .. } if *client_id == id), |c| c == id).await?
        {
            ServerMessage::Ack { id, timestamp_ms, queued, live, full, .. } => {
                Ok(Acked { id, timestamp_ms, queued, live, full })
            }
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Asks what `room` is.
    pub async fn room_info(&mut self, room: &str) -> Result<RoomInfo, ClientError> {
        self.request(GroupRequest::RoomInfo { room: room.to_owned() }).await?;
        let want = |m: &ServerMessage| matches!(m, ServerMessage::Group(GroupEvent::RoomInfo { room: r, .. }) if r.eq_ignore_ascii_case(room));
        match group(self.reply(want, |_| false).await?)? {
            GroupEvent::RoomInfo { kind, group_id, epoch, admins, .. } => {
                Ok(RoomInfo { kind, group_id, epoch, admins })
            }
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Fetches a group's latest GroupInfo (to join a public room by
    /// external commit): its epoch and the `MLSMessage`.
    pub async fn group_info(&mut self, group_id: &[u8]) -> Result<(u64, Vec<u8>), ClientError> {
        self.request(GroupRequest::GroupInfo { group_id: group_id.to_vec() }).await?;
        let want = |m: &ServerMessage| matches!(m, ServerMessage::Group(GroupEvent::GroupInfo { group_id: g, .. }) if g == group_id);
        match group(self.reply(want, |_| false).await?)? {
            GroupEvent::GroupInfo { epoch, group_info, .. } => Ok((epoch, group_info)),
            _ => Err(ClientError::Unexpected),
        }
    }
}
