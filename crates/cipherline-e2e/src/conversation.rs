//! One end-to-end conversation (an MLS group) as one member holds it, and
//! what comes out of it: messages, commits to send, changes received.

use cipherline_proto::app::fold_name;
use mls_rs::error::MlsError;
use mls_rs::group::proposal::Proposal;
use mls_rs::group::{CommitEffect, CommitMessageDescription, ReceivedMessage};
use mls_rs::{Group, MlsMessage};
use zeroize::Zeroizing;

use crate::identity::{Identity, identity_of};
use crate::member::Config;
use crate::rules::is_public;
use crate::store::Store;
use crate::{E2eError, Result, UPDATE_AFTER_MESSAGES, UPDATE_AFTER_MS};

/// One end-to-end conversation (an MLS group) as one member holds it.
pub struct Conversation {
    group: Group<Config>,
    store: Store,
}

/// A message received in a conversation.
pub struct Received {
    /// Who sent it, as its credential in the group states.
    pub sender: Identity,
    /// What it says; erased on drop.
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// A commit built and not yet applied: send it to the relay, then
/// [`Conversation::confirm`] (accepted) or [`Conversation::abandon`]
/// (refused: another commit won the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The epoch the commit was built in (the relay accepts one commit per
    /// epoch).
    pub epoch: u64,
    /// The commit, an `MLSMessage` for the members.
    pub commit: Vec<u8>,
    /// The Welcome (an `MLSMessage`, with the ratchet tree) for the members
    /// it adds, if it adds any.
    pub welcome: Option<Vec<u8>>,
    /// For public groups: the GroupInfo (an `MLSMessage`, with the ratchet
    /// tree) of the epoch the commit starts, for the next external join.
    pub group_info: Option<Vec<u8>>,
}

/// A change of the group a commit made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The new epoch.
    pub epoch: u64,
    /// Who was added (by Welcome, or by their own external commit).
    pub added: Vec<Identity>,
    /// Who was removed.
    pub removed: Vec<Identity>,
    /// Whether this member was removed: the group is over for it (see
    /// [`crate::Member::forget`]).
    pub removed_me: bool,
    /// Who made the commit.
    pub committer: Identity,
}

/// What [`Conversation::receive`] found.
pub enum Incoming {
    /// A message from a member.
    Application(Received),
    /// A commit, now applied (also this member's own pending commit when
    /// the relay echoes it: then it is confirmed).
    Commit(Change),
}

impl Conversation {
    /// A group this member just created or joined: stored, with its leaf
    /// bookkeeping started.
    pub(crate) fn started(mut group: Group<Config>, store: Store) -> Result<Self> {
        group.write_to_storage()?;
        store.start(group.group_id())?;
        Ok(Conversation { group, store })
    }

    /// A group loaded from the store.
    pub(crate) fn loaded(group: Group<Config>, store: Store) -> Self {
        Conversation { group, store }
    }

    /// The group's id.
    #[must_use]
    pub fn id(&self) -> &[u8] {
        self.group.group_id()
    }

    /// The group's current epoch.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.group.current_epoch()
    }

    /// What the group says it is (its creator's label, agreed by every
    /// member), if it has a label.
    #[must_use]
    pub fn label(&self) -> Option<crate::rules::Label> {
        crate::rules::Label::of(&self.group.context().extensions)
    }

    /// Whether anyone holding the GroupInfo may join by external commit.
    #[must_use]
    pub fn is_public(&self) -> bool {
        is_public(&self.group.context().extensions)
    }

    /// Encrypts `plaintext` for the other members (an `MLSMessage`). The
    /// advanced key schedule is stored before the ciphertext is returned:
    /// a restart never reuses a message key.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let msg = self.group.encrypt_application_message(plaintext, Vec::new())?;
        self.group.write_to_storage()?;
        self.store.count_sent(self.group.group_id())?;
        Ok(msg.to_bytes()?)
    }

    /// Processes an `MLSMessage` from the group: a message from a member,
    /// or a commit (applied). The new state is stored before returning.
    /// Our own commit echoed by the relay confirms it; any other message
    /// of our own is [`E2eError::FromSelf`].
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Incoming> {
        let msg = MlsMessage::from_bytes(bytes)?;
        if self.group.has_pending_commit()
            && self.store.pending(self.group.group_id())?.is_some_and(|(pending, _)| pending.commit == bytes)
        {
            return self.apply_pending().map(Incoming::Commit);
        }
        let received = match self.group.process_incoming_message(msg) {
            Ok(received) => received,
            Err(MlsError::CantProcessMessageFromSelf) => return Err(E2eError::FromSelf),
            Err(e) => return Err(e.into()),
        };
        match received {
            ReceivedMessage::ApplicationMessage(app) => {
                let member = self
                    .group
                    .member_at_index(app.sender_index)
                    .ok_or(E2eError::Unexpected("a sender not in the group"))?;
                let sender = identity_of(&member.signing_identity)?;
                let plaintext = Zeroizing::new(app.data().to_vec());
                self.group.write_to_storage()?;
                Ok(Incoming::Application(Received { sender, plaintext }))
            }
            ReceivedMessage::Commit(description) => {
                let change = self.change(&description)?;
                self.group.write_to_storage()?;
                // A commit from someone else ended the epoch: mls-rs has
                // dropped any commit of ours built in it.
                self.store.set_pending(self.group.group_id(), None, false)?;
                Ok(Incoming::Commit(change))
            }
            ReceivedMessage::Proposal(_) => {
                // We never commit proposals by reference: a cached one would
                // block sending (RFC 9420 §12.1) until someone commits it.
                self.group.clear_proposal_cache();
                self.group.write_to_storage()?;
                Err(E2eError::Unexpected("a proposal"))
            }
            _ => Err(E2eError::Unexpected("not an application message or a commit")),
        }
    }

    /// A commit adding the owners of `key_packages` (`MLSMessage`s), NOT
    /// applied yet: send it, then [`Conversation::confirm`] or
    /// [`Conversation::abandon`]. The Welcome carries the ratchet tree.
    pub fn add(&mut self, key_packages: &[Vec<u8>]) -> Result<Pending> {
        let mut builder = self.group.commit_builder();
        for kp in key_packages {
            builder = builder.add_member(MlsMessage::from_bytes(kp)?)?;
        }
        let output = builder.build()?;
        self.pending_from(output, false)
    }

    /// A commit removing the members named `names` (compared folded),
    /// NOT applied yet (as [`Conversation::add`]). After it, the removed
    /// members can decrypt nothing new.
    pub fn remove(&mut self, names: &[&str]) -> Result<Pending> {
        let members = self.members()?;
        let mut builder = self.group.commit_builder();
        for name in names {
            let folded = fold_name(name);
            let index = members
                .iter()
                .find(|(_, id)| fold_name(&id.name) == folded)
                .map(|(index, _)| *index)
                .ok_or_else(|| E2eError::NoSuchMember((*name).to_owned()))?;
            builder = builder.remove_member(index)?;
        }
        let output = builder.build()?;
        self.pending_from(output, true)
    }

    /// A commit that only replaces this member's leaf key (post-compromise
    /// security), NOT applied yet (as [`Conversation::add`]).
    pub fn update(&mut self) -> Result<Pending> {
        let output = self.group.commit_builder().build()?;
        self.pending_from(output, true)
    }

    /// Stores and returns a commit just built; `path`: whether it carries
    /// an update path (removals and updates do, add-only commits do not).
    fn pending_from(&mut self, output: mls_rs::group::CommitOutput, path: bool) -> Result<Pending> {
        let commit = output.commit_message.to_bytes()?;
        let welcome = output.welcome_messages.first().map(MlsMessage::to_bytes).transpose()?;
        let group_info = output.external_commit_group_info.as_ref().map(MlsMessage::to_bytes).transpose()?;
        // Stored before the commit leaves: if the relay accepts it and we
        // are killed, the next run can still confirm it (mls-rs cannot
        // process its own commit without the pending state).
        self.group.write_to_storage()?;
        let pending = Pending { epoch: self.group.current_epoch(), commit, welcome, group_info };
        self.store.set_pending(self.group.group_id(), Some(&pending), path)?;
        Ok(pending)
    }

    /// The commit we built and have neither confirmed nor abandoned, as
    /// [`Conversation::add`] (or `remove`, `update`) returned it: after a
    /// restart, the client resubmits it or learns from the relay whether it
    /// was accepted.
    pub fn pending(&self) -> Result<Option<Pending>> {
        if !self.group.has_pending_commit() {
            return Ok(None);
        }
        Ok(self.store.pending(self.group.group_id())?.map(|(pending, _)| pending))
    }

    /// The relay accepted our pending commit: apply it.
    pub fn confirm(&mut self) -> Result<()> {
        self.apply_pending().map(drop)
    }

    fn apply_pending(&mut self) -> Result<Change> {
        if !self.group.has_pending_commit() {
            return Err(E2eError::NoPendingCommit);
        }
        let path = self.store.pending(self.group.group_id())?.is_some_and(|(_, path)| path);
        let description = self.group.apply_pending_commit()?;
        let change = self.change(&description)?;
        self.group.write_to_storage()?;
        if path {
            // Our leaf key is new: the update counters start over.
            self.store.start(self.group.group_id())?;
        } else {
            self.store.set_pending(self.group.group_id(), None, false)?;
        }
        Ok(change)
    }

    /// The relay refused our pending commit (another commit won the
    /// epoch): drop it. Then receive the winning commit(s) and retry.
    pub fn abandon(&mut self) -> Result<()> {
        if !self.group.has_pending_commit() {
            return Err(E2eError::NoPendingCommit);
        }
        self.group.clear_pending_commit();
        self.group.write_to_storage()?;
        self.store.set_pending(self.group.group_id(), None, false)
    }

    /// The GroupInfo (an `MLSMessage`, with the ratchet tree) of the
    /// current epoch, from which anyone may join a public group by external
    /// commit.
    pub fn group_info(&self) -> Result<Vec<u8>> {
        if !self.is_public() {
            return Err(E2eError::NotPublic);
        }
        Ok(self.group.group_info_message_allowing_ext_commit(true)?.to_bytes()?)
    }

    /// The members, by leaf index, as their credentials state them.
    pub fn members(&self) -> Result<Vec<(u32, Identity)>> {
        self.group.roster().members_iter().map(|m| Ok((m.index, identity_of(&m.signing_identity)?))).collect()
    }

    /// Whether this member should send an update commit
    /// ([`Conversation::update`]): its leaf key is older than
    /// [`UPDATE_AFTER_MS`] at `now_ms` (milliseconds since the Unix epoch),
    /// or it sent [`UPDATE_AFTER_MESSAGES`] messages with it. Any confirmed
    /// commit of ours with a path (an update, a removal) resets both. True if the bookkeeping is missing or
    /// unreadable (an update is always safe).
    #[must_use]
    pub fn needs_update(&self, now_ms: u64) -> bool {
        match self.store.leaf(self.group.group_id()) {
            Ok(Some((since, sent))) => now_ms.saturating_sub(since) >= UPDATE_AFTER_MS || sent >= UPDATE_AFTER_MESSAGES,
            _ => true,
        }
    }

    /// What a commit changed, from mls-rs's description of it.
    fn change(&self, description: &CommitMessageDescription) -> Result<Change> {
        let (new_epoch, removed_me) = match &description.effect {
            CommitEffect::NewEpoch(new_epoch) => (new_epoch, false),
            CommitEffect::Removed { new_epoch, .. } => (new_epoch, true),
            CommitEffect::ReInit(_) => return Err(E2eError::Unexpected("a re-initialisation")),
        };
        let prior = new_epoch.prior_state();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for info in new_epoch.applied_proposals() {
            match &info.proposal {
                Proposal::Add(add) => added.push(identity_of(add.signing_identity())?),
                Proposal::Remove(remove) => {
                    let member = prior
                        .member_at_index(remove.to_remove())
                        .ok_or(E2eError::Unexpected("a removal of no member"))?;
                    removed.push(identity_of(&member.signing_identity)?);
                }
                _ => {}
            }
        }
        // An external committer is a new member, in the new tree only.
        let committer = if description.is_external {
            let member = self.group.member_at_index(description.committer);
            let id = identity_of(&member.ok_or(E2eError::Unexpected("no committer"))?.signing_identity)?;
            added.push(id.clone());
            id
        } else {
            let member = prior.member_at_index(description.committer);
            identity_of(&member.ok_or(E2eError::Unexpected("no committer"))?.signing_identity)?
        };
        Ok(Change { epoch: new_epoch.epoch(), added, removed, removed_me, committer })
    }
}
