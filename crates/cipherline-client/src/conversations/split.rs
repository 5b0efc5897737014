//! The engine for a client whose connection is split into a reader task
//! and a writer (`chat`): application messages are encrypted here and sent
//! by the caller on its writer (so its own acknowledgement tracking, rate
//! retries and "not sent" reports apply), while the requests that wait for
//! an answer run on another connection the caller keeps for them.

use cipherline_proto::app::E2eContent;

use super::{Conversations, e2e, lock, now_ms};
use crate::client::Client;
use crate::error::ClientError;

impl Conversations {
    /// Encrypts `text` as the next application message of group
    /// `group_id` (the MLS payload of a group Send). Each call uses a new
    /// key of the group's ratchet: a text sent again is encrypted again.
    pub fn encrypt_for(&self, group_id: &[u8], text: &str) -> Result<Vec<u8>, ClientError> {
        let content = E2eContent { sent_at_ms: now_ms(), text: text.to_owned() };
        let _guard = lock(&self.lock)?;
        let mut conv = self.load(group_id)?;
        conv.encrypt(&content.encode()).map_err(e2e)
    }

    /// The direct conversation with `peer`, if this client has one.
    pub fn direct_with(&self, peer: &str) -> Result<Option<Vec<u8>>, ClientError> {
        self.direct_group(peer)
    }

    /// The direct conversation with `peer`, started on `client` from one
    /// of its KeyPackages (whose key `accept` approves) if there is none.
    #[allow(clippy::type_complexity)] // The same check as the engine's other methods take.
    pub async fn open_direct(
        &self,
        client: &mut Client,
        peer: &str,
        accept: &mut dyn FnMut(&str, &[u8; 32]) -> Result<(), ClientError>,
    ) -> Result<Vec<u8>, ClientError> {
        match self.direct_group(peer)? {
            Some(id) => Ok(id),
            None => self.start_direct(client, peer, accept).await,
        }
    }

    /// Whether this client's leaf key in `group_id` is due for an update
    /// ([`Conversations::update_if_due`] sends it), checked locally so a
    /// caller opens a connection for it only when needed.
    pub fn update_due(&self, group_id: &[u8]) -> Result<bool, ClientError> {
        let _guard = lock(&self.lock)?;
        Ok(self.load(group_id)?.needs_update(now_ms()))
    }
}
