//! The group policy mls-rs applies to every commit we build or receive.

use mls_rs::client_builder::PaddingMode;
use mls_rs::extension::ExtensionType;
use mls_rs::group::{GroupContext, Roster};
use mls_rs::mls_rules::{CommitDirection, CommitOptions, CommitSource, EncryptionOptions, ProposalBundle};
use mls_rs::{ExtensionList, MlsRules};

/// The group context extension that marks a group public: anyone holding
/// its GroupInfo may join by external commit. From the private-use range
/// of RFC 9420 §17.3 (0xF000-0xFFFF); empty. Being in the group context, it
/// is agreed by every member and covered by every signature, so the relay
/// cannot make a private group public.
pub(crate) const PUBLIC_GROUP: ExtensionType = ExtensionType::new(0xF0C1);

pub(crate) fn is_public(extensions: &ExtensionList) -> bool {
    extensions.has_extension(PUBLIC_GROUP)
}

/// The group context extension that says what a conversation is: `uint8`
/// 1 (a direct conversation, nothing follows) or 2 (a room, its folded
/// name follows, 1 to 64 bytes). Private-use range; agreed by every member
/// and covered by every signature, so the relay cannot pass one group off
/// as another kind of conversation.
pub(crate) const CONVERSATION: ExtensionType = ExtensionType::new(0xF0C2);

/// What a group says it is ([`CONVERSATION`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// A direct conversation of exactly two members.
    Direct,
    /// The room of this (folded) name.
    Room(String),
}

impl Label {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Label::Direct => vec![1],
            Label::Room(room) => {
                let mut out = vec![2];
                out.extend_from_slice(cipherline_proto::app::fold_name(room).as_bytes());
                out
            }
        }
    }

    /// The label in `extensions`, if there is one that parses.
    pub(crate) fn of(extensions: &ExtensionList) -> Option<Label> {
        let ext = extensions.get(CONVERSATION)?;
        match ext.extension_data.split_first()? {
            (1, []) => Some(Label::Direct),
            (2, name) => {
                let name = std::str::from_utf8(name).ok()?;
                cipherline_proto::app::valid_name(name, cipherline_proto::app::MAX_NAME)
                    .then(|| Label::Room(name.to_owned()))
            }
            _ => None,
        }
    }
}

/// Refusal of a commit our rules do not allow.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RuleBroken {
    /// An external commit into a group that is not public.
    #[error("an external join to a group that is not public")]
    ExternalJoinToPrivateGroup,
    /// A proposal kind our groups never use (PSKs, re-initialisation,
    /// changes to the group context, custom proposals).
    #[error("a proposal kind cipherline groups do not use")]
    ProposalKind,
}

impl mls_rs::error::IntoAnyError for RuleBroken {
    fn into_dyn_error(self) -> Result<Box<dyn std::error::Error + Send + Sync>, Self> {
        Ok(Box::new(self))
    }
}

/// Our rules (see the crate documentation): a path where RFC 9420 needs
/// one (removals, updates, external joins), none in add-only commits; the
/// ratchet tree travels in Welcomes, one Welcome per commit, external
/// commits only into public groups, commits and messages encrypted, Padmé
/// padding.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rules;

impl MlsRules for Rules {
    type Error = RuleBroken;

    fn filter_proposals(
        &self,
        _direction: CommitDirection,
        source: CommitSource,
        _current_roster: &Roster,
        current_context: &GroupContext,
        proposals: ProposalBundle,
    ) -> Result<ProposalBundle, Self::Error> {
        if matches!(source, CommitSource::NewMember(_)) && !is_public(&current_context.extensions) {
            return Err(RuleBroken::ExternalJoinToPrivateGroup);
        }
        // A member could otherwise flip a group public or private, or pull
        // in secrets from outside: nothing we offer needs these.
        if !proposals.psk_proposals().is_empty()
            || !proposals.reinit_proposals().is_empty()
            || !proposals.group_context_ext_proposals().is_empty()
            || !proposals.custom_proposals().is_empty()
        {
            return Err(RuleBroken::ProposalKind);
        }
        Ok(proposals)
    }

    fn commit_options(
        &self,
        _new_roster: &Roster,
        new_context: &GroupContext,
        _proposals: &ProposalBundle,
    ) -> Result<CommitOptions, Self::Error> {
        Ok(CommitOptions::new()
            // No path in add-only commits: in a group whose tree still has
            // blank nodes (every freshly built one), a path is encrypted to
            // nearly every member, over 1 MiB at 1,000 members in X-Wing
            // (see BENCHMARKS.md), while adding someone heals nothing.
            // Removals and updates carry one, as RFC 9420 requires.
            .with_path_required(false)
            .with_ratchet_tree_extension(true)
            .with_single_welcome_message(true)
            .with_allow_external_commit(is_public(&new_context.extensions)))
    }

    fn encryption_options(
        &self,
        _current_roster: &Roster,
        _current_context: &GroupContext,
    ) -> Result<EncryptionOptions, Self::Error> {
        // Commits as PrivateMessages: the relay sequences them by epoch
        // (in the clear in the header) without learning who was added or
        // removed. Padmé leaks O(log log n) bits of a message's length.
        Ok(EncryptionOptions::new(true, PaddingMode::Padme))
    }
}
