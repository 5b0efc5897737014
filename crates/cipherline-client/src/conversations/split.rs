//! The engine for a client whose connection is split into a reader task
//! and a writer (`chat`): application messages are encrypted here and sent
//! by the caller on its writer (so its own acknowledgement tracking, rate
//! retries and "not sent" reports apply), while the requests that wait for
//! an answer run on another connection the caller keeps for them.

use super::{Conversations, KeyCheck, lock, now_ms};
use crate::client::Client;
use crate::error::ClientError;

impl Conversations {
    /// Encrypts `text` as the next application message of group
    /// `group_id` (the MLS payload of a group Send): [`Conversations::seal`].
    /// A text the relay refused for now is sent again as the same payload.
    pub fn encrypt_for(&self, group_id: &[u8], text: &str) -> Result<Vec<u8>, ClientError> {
        self.seal(group_id, text)
    }

    /// The direct conversation with `peer`, if this client has one.
    pub fn direct_with(&self, peer: &str) -> Result<Option<Vec<u8>>, ClientError> {
        self.direct_group(peer)
    }

    /// The direct conversation with `peer`, started on `client` from one
    /// of its KeyPackages (whose key `accept` approves) if there is none.
    pub async fn open_direct(
        &self,
        client: &mut Client,
        peer: &str,
        accept: &mut KeyCheck<'_>,
    ) -> Result<Vec<u8>, ClientError> {
        self.direct(client, peer, accept).await
    }

    /// Whether this client's leaf key in `group_id` is due for an update
    /// ([`Conversations::update_if_due`] sends it), checked locally so a
    /// caller opens a connection for it only when needed.
    pub fn update_due(&self, group_id: &[u8]) -> Result<bool, ClientError> {
        let _guard = lock(&self.lock)?;
        Ok(self.load(group_id)?.needs_update(now_ms()))
    }
}
