//! `chat`'s identity keys: what a Whois shows, safety codes, and
//! confirming a key as verified.

use cipherline_client::display::escape;
use cipherline_client::peers::MessageStatus;
use cipherline_keys::Fingerprint;
use cipherline_proto::app::fold_name;
use cipherline_proto::crypto::sign::{IdentityPublicKey, SignatureAlgorithm};
use cipherline_proto::signature;

use super::Chat;

impl Chat {
    pub(super) fn on_identity(&mut self, name: &str, algorithm: u16, key: &[u8]) {
        let parsed = SignatureAlgorithm::from_u16(algorithm).and_then(|a| IdentityPublicKey::from_spki(a, key).ok());
        let Some(key) = parsed else {
            self.verify_pending.remove(&fold_name(name));
            match self.peers.check_no_key(name) {
                MessageStatus::KeyChanged { remembered, .. } => {
                    self.changed.insert(fold_name(name), None);
                    let name = escape(name);
                    self.screen.show(format!(
                        "!!! {name} HAS NO IDENTITY KEY NOW, but you remembered {remembered}: someone may be \
                         impersonating them (/trust {name} to forget the old key)"
                    ));
                }
                _ => self.screen.show(format!("* {} has no identity key: their messages are unsigned", escape(name))),
            }
            return;
        };
        let fp = Fingerprint::from_bytes(key.fingerprint());
        let what = match self.peers.check_key(name, &key) {
            MessageStatus::New(_) => format!("first seen, now remembered, not verified (/verify {name})"),
            MessageStatus::KeyChanged { remembered, .. } => {
                self.changed.insert(fold_name(name), Some(fp));
                format!("CHANGED: you remembered {remembered}; /verify then /trust to accept it")
            }
            MessageStatus::Verified => "the key you remembered and verified".to_owned(),
            _ => format!("the key you remembered, not verified (/verify {name})"),
        };
        self.screen.show(format!("* {}: {} key {fp} ({}) — {what}", escape(name), key_kind(algorithm), fp.short()));
        if self.verify_pending.remove(&fold_name(name)) {
            self.show_safety_code(name, fp);
        }
    }

    pub(super) fn show_safety_code(&mut self, name: &str, theirs: Fingerprint) {
        let Some(mine) = self.me else {
            self.screen.show("! you have no identity key (--no-identity), so there is nothing to verify");
            return;
        };
        let code = signature::safety_code(mine.as_bytes(), theirs.as_bytes());
        let which = if self.changed.get(&fold_name(name)).copied().flatten() == Some(theirs) { "NEW key " } else { "" };
        self.screen.show(format!("* safety code with {} ({which}{theirs}): {code}", escape(name)));
        self.screen.show(format!(
            "  compare it with {name} in person or on a call: if both of you see the same code, the server \
             did not swap your keys"
        ));
        if which.is_empty() {
            self.screen.show(format!("  if it matches, type /verify {name} confirm"));
        } else {
            self.screen.show(format!("  if it matches, /trust {name}, then /verify {name} confirm"));
        }
        self.codes_shown.insert(fold_name(name), theirs);
    }

    /// `/verify USER confirm`: the user compared the code shown for the
    /// remembered key and it matched.
    pub(super) fn confirm(&mut self, name: &str) {
        let Some(remembered) = self.peers.remembered(name) else {
            self.screen.show(format!("! no key remembered for {name}: /verify {name} first"));
            return;
        };
        if self.changed.contains_key(&fold_name(name)) {
            self.screen.show(format!("! {name}'s key changed: compare the new code (/verify {name}) and /trust first"));
            return;
        }
        if self.codes_shown.get(&fold_name(name)) != Some(&remembered) {
            self.screen.show(format!("! /verify {name} first, and compare the code it shows"));
            return;
        }
        match self.peers.mark_verified(&fold_name(name), remembered) {
            Ok(()) => self.screen.show(format!("* {name}'s key {remembered} is now verified")),
            Err(e) => self.screen.show(format!("! cannot record it: {e}")),
        }
    }
}

fn key_kind(algorithm: u16) -> &'static str {
    match SignatureAlgorithm::from_u16(algorithm) {
        Some(SignatureAlgorithm::Ed25519) => "Ed25519",
        Some(SignatureAlgorithm::RsaPssSha256) => "RSA",
        None => "unknown",
    }
}
