//! End-to-end conversations as the front-ends show them: a decrypted
//! message becomes a [`Delivery`] with a verdict from its MLS key (so it is
//! shown, recorded and de-duplicated like any other message), and group
//! changes become lines for the user. Every peer string is escaped.

use std::io::Write as _;

use cipherline_client::ClientError;
use cipherline_client::conversations::Conversations;
use cipherline_client::display::escape;
use cipherline_client::groups::Outcome;
use cipherline_client::peers::{MessageStatus, Peers};
use cipherline_keys::Fingerprint;
use cipherline_proto::app::{Delivery, GroupDelivery, Target};
use cipherline_proto::crypto::sign::IdentityPublicKey;

use crate::error::CliError;
use crate::output::{key_notice, print_message};
use crate::recorder::Recorder;

/// A decrypted message as a delivery, with the verdict on the key its MLS
/// credential holds (remembered on first use, like a signature's key).
/// `None` for outcomes that are not messages.
pub fn as_delivery(outcome: &Outcome, d: &GroupDelivery, peers: &mut Peers) -> Option<(Delivery, MessageStatus)> {
    let Outcome::Message { from, key, target, text, .. } = outcome else { return None };
    let status = peers.check_key(from, &IdentityPublicKey::ed25519_from_raw(key));
    let delivery = Delivery {
        id: d.id,
        timestamp_ms: d.timestamp_ms,
        from: from.clone(),
        to: target.clone(),
        text: text.clone(),
        signed: None,
        seq: d.seq,
    };
    Some((delivery, status))
}

fn conversation(target: &Target) -> String {
    match target {
        Target::Room(room) => format!("the end-to-end room {}", escape(room)),
        Target::User(user) => format!("the end-to-end conversation with {}", escape(user)),
    }
}

/// A line telling the user what a non-message outcome means; `None` for
/// a message. Failures start with `!`.
pub fn describe(outcome: &Outcome) -> Option<String> {
    Some(match outcome {
        Outcome::Message { .. } => return None,
        Outcome::File { from, target, name, size, .. } => format!(
            "* {} sent the file {} ({size} bytes, end-to-end encrypted){}: see `cipherline files list`",
            escape(from),
            escape(name),
            match target {
                Target::Room(room) => format!(" in {}", escape(room)),
                Target::User(_) => String::new(),
            }
        ),
        Outcome::Joined { target: Target::User(user), .. } => {
            format!("* {} started an end-to-end conversation with you", escape(user))
        }
        Outcome::Joined { target, members } => {
            format!("* you were added to {} (members: {})", conversation(target), escape(members))
        }
        Outcome::Changed { by, target, summary } if summary.is_empty() => {
            format!("* {} renewed their keys in {}", escape(by), conversation(target))
        }
        Outcome::Changed { by, target, summary } => {
            format!("* {} changed the members of {}: {}", escape(by), conversation(target), escape(summary))
        }
        Outcome::Removed { by, target } => format!("* {} removed you from {}", escape(by), conversation(target)),
        Outcome::Failed { from, target, reason } => format!(
            "! a message in {} (the relay says from {}) was not shown: {}",
            conversation(target),
            escape(from),
            escape(reason)
        ),
    })
}

/// The trust check before starting a conversation with (or inviting)
/// someone from their KeyPackage: a key different from the one remembered
/// for the name is refused (as a key-change warning would say); a first
/// key is remembered.
pub fn key_check(peers: &mut Peers) -> impl FnMut(&str, &[u8; 32]) -> Result<(), ClientError> + '_ {
    move |name, key| match peers.check_key(name, &IdentityPublicKey::ed25519_from_raw(key)) {
        MessageStatus::KeyChanged { remembered, presented } => Err(ClientError::EndToEnd(format!(
            "the identity key of {} has changed (remembered {remembered}, now {}): not sent. Compare safety codes \
             with them (chat: /verify {0}); if the new key is theirs, /trust {0} in chat forgets the old one",
            escape(name),
            presented.map_or_else(|| "none".to_owned(), |p: Fingerprint| p.to_string())
        ))),
        _ => Ok(()),
    }
}

/// Processes a delivered MLS message and writes what it gave to standard
/// output (a message, as `listen` prints any) or standard error (group
/// changes, and failures; with `--json` failures go to standard output as
/// `{"e2e_error"}`). Returns whether a message was shown. The caller
/// acknowledges `d.seq` afterwards: everything is written out by then.
pub fn print_group(
    e2e: &Conversations,
    d: &GroupDelivery,
    peers: &mut Peers,
    recorder: &mut Recorder,
    me: &str,
    as_json: bool,
) -> Result<bool, CliError> {
    let outcome = e2e.handle(d).map_err(CliError::Client)?;
    if let Some((delivery, status)) = as_delivery(&outcome, d, peers) {
        if !recorder.is_new(me, &delivery, &status) {
            return Ok(false);
        }
        if let Some(notice) = key_notice(&delivery, &status) {
            eprintln!("{notice}");
        }
        print_message(&delivery, me, &status, as_json, true);
        if let Outcome::Message { notice, .. } = &outcome
            && !notice.is_empty()
        {
            // Already escaped by the engine.
            if as_json {
                println!("{}", serde_json::json!({ "e2e_notice": { "id": d.id, "text": notice } }));
            } else {
                eprintln!("! {notice}");
            }
        }
        if std::io::stdout().flush().is_err() {
            return Err(CliError::failed("cannot write to standard output", "check the pipe"));
        }
        recorder.shown_as(me, &delivery, &status, true);
        return Ok(true);
    }
    if let Some(line) = describe(&outcome) {
        let failure = line.starts_with('!');
        if as_json && failure {
            println!("{}", serde_json::json!({ "e2e_error": { "id": d.id, "text": line } }));
        } else {
            // Standard error, for the person watching; --json keeps
            // standard output for messages and failures.
            eprintln!("{line}");
        }
    }
    Ok(false)
}
