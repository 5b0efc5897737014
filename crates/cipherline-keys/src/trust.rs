//! Deciding whether to trust the key a server presented.
//!
//! In order:
//!
//! 1. **Pinned** (`--server-key PATH` or `--server-fingerprint SHA256:...`):
//!    the key must have exactly that fingerprint. The known-servers file is
//!    neither read nor written.
//! 2. **Known**: the known-servers file has this server with this key: trust.
//! 3. **Changed**: the file has this server with another key: refuse, always,
//!    even with `--accept-new`. Either someone is in the middle or the
//!    operator replaced the key; only the user, after checking, can remove
//!    the old line.
//! 4. **Unknown** (first contact): with `--accept-new`, record the key and
//!    trust it (trust on first use). Otherwise, if the caller has a terminal,
//!    it passes a prompt that shows the fingerprint and asks yes/no; yes
//!    records the key. With neither, refuse.
//!
//! A server that presents **no key** (a password-only server) is trusted
//! only in password-only mode (`--password-only`), never with a pin, and
//! never when the file records a key for it: otherwise a man in the middle
//! who knows the password could drop a key-and-password server's key and
//! with it the whole check above ([`TrustPolicy::check_keyless`]). In
//! password-only mode the server is recorded as `password-only` at first
//! contact, so a key appearing later is a changed key, and a server that
//! presents a key is refused.

use std::io;

use cipherline_proto::crypto::kem::ServerPublicKey;

use crate::address::ServerAddr;
use crate::error::{Error, KeyChange};
use crate::fingerprint::Fingerprint;
use crate::known_servers::{KnownServers, Lookup, ServerAuth};

/// What a first-contact prompt is shown: everything needed to ask "do you
/// trust this key?".
pub struct FirstContact<'a> {
    server: &'a ServerAddr,
    key: &'a ServerPublicKey,
    fingerprint: Fingerprint,
    known_servers: &'a KnownServers,
}

impl FirstContact<'_> {
    /// The server being contacted.
    #[must_use]
    pub fn server(&self) -> &ServerAddr {
        self.server
    }

    /// The fingerprint of the key it presented.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The key's kind in words: `RSA-3072` or `X25519`.
    #[must_use]
    pub fn key_description(&self) -> String {
        describe_server_key(self.key)
    }

    /// The file the key will be recorded in if the user says yes.
    #[must_use]
    pub fn known_servers(&self) -> &KnownServers {
        self.known_servers
    }
}

/// A server key's kind in words: `RSA-3072` or `X25519`.
#[must_use]
pub fn describe_server_key(key: &ServerPublicKey) -> String {
    match key.rsa_bits() {
        Some(bits) => format!("RSA-{bits}"),
        None => "X25519".to_owned(),
    }
}

/// Asks the user whether to trust a server at first contact; `Ok(true)` means
/// yes. Only passed in when there is someone to ask (a terminal).
pub type Prompt<'p> = &'p mut dyn FnMut(&FirstContact<'_>) -> io::Result<bool>;

/// Why a server's key was trusted.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trusted {
    /// It matched the key pinned for this connection.
    Pinned,
    /// The known-servers file has it (at this 1-based line).
    Known {
        /// The matching line.
        line: usize,
    },
    /// First contact: the key was recorded in the known-servers file.
    Recorded {
        /// Whether `--accept-new` or the user's "yes" allowed it.
        by: Approval,
    },
}

/// Who allowed trusting a new server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// The `--accept-new` flag (trust on first use without asking).
    AcceptNew,
    /// The user answered yes at the prompt.
    Prompt,
    /// The user asked for password-only mode (`--password-only`) and the
    /// server presented no key: there is no fingerprint to compare, the
    /// shared password authenticates the server.
    PasswordOnly,
}

/// The client's rules for trusting servers; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    known_servers: KnownServers,
    accept_new: bool,
    pin: Option<Fingerprint>,
    password_only: bool,
}

impl TrustPolicy {
    /// Trust what `known_servers` records; ask (or refuse) at first contact.
    #[must_use]
    pub fn new(known_servers: KnownServers) -> Self {
        TrustPolicy { known_servers, accept_new: false, pin: None, password_only: false }
    }

    /// Record and trust a server's key at first contact without asking
    /// (`--accept-new`). Never overrides a changed key.
    #[must_use]
    pub fn accept_new(mut self, accept_new: bool) -> Self {
        self.accept_new = accept_new;
        self
    }

    /// Pin the server's key for this connection (`--server-key`,
    /// `--server-fingerprint`): the known-servers file is then bypassed.
    #[must_use]
    pub fn pin(mut self, pin: Option<Fingerprint>) -> Self {
        self.pin = pin;
        self
    }

    /// Password-only mode (`--password-only`): expect a server with no key.
    /// A keyless server is then trusted (and recorded as `password-only` at
    /// first contact) unless the file records a key for it; a server that
    /// presents a key is refused.
    #[must_use]
    pub fn password_only(mut self, password_only: bool) -> Self {
        self.password_only = password_only;
        self
    }

    /// The known-servers file this policy uses.
    #[must_use]
    pub fn known_servers(&self) -> &KnownServers {
        &self.known_servers
    }

    /// Decides whether to trust `key`, presented by `server`. `prompt` is
    /// `Some` only when a person can be asked (a terminal is attached).
    ///
    /// Returns why the key is trusted, or the error that explains the
    /// refusal; on any error the caller must not go on with the connection.
    pub fn check(
        &self,
        server: &ServerAddr,
        key: &ServerPublicKey,
        prompt: Option<Prompt<'_>>,
    ) -> Result<Trusted, Error> {
        let presented = Fingerprint::of_server_key(key);
        if let Some(pinned) = self.pin {
            return if pinned == presented {
                Ok(Trusted::Pinned)
            } else {
                Err(Error::PinMismatch { server: server.clone(), pinned, presented })
            };
        }
        match self.known_servers.lookup(server, &presented)? {
            // Another key, or a key where the file says password-only.
            Lookup::Changed { line, known } => {
                return Err(self.changed(server, line, known, ServerAuth::Key(presented)));
            }
            // The user said the server has no key; it presented one.
            _ if self.password_only => {
                return Err(Error::KeyNotExpected { server: server.clone(), fingerprint: presented });
            }
            Lookup::Known { line } => return Ok(Trusted::Known { line }),
            Lookup::Unknown => {}
        }
        let by = if self.accept_new {
            Approval::AcceptNew
        } else if let Some(prompt) = prompt {
            let contact = FirstContact { server, key, fingerprint: presented, known_servers: &self.known_servers };
            if !prompt(&contact).map_err(Error::Prompt)? {
                return Err(Error::ServerRejected { server: server.clone(), fingerprint: presented });
            }
            Approval::Prompt
        } else {
            return Err(Error::UnknownServer {
                server: server.clone(),
                fingerprint: presented,
                known_servers: self.known_servers.path().to_owned(),
            });
        };
        // `add` re-checks under the lock: if another client recorded a
        // different key for this server meanwhile, this is a changed key.
        self.known_servers.add(server, &presented)?;
        Ok(Trusted::Recorded { by })
    }

    /// Decides whether to trust a server that presented no key (a
    /// password-only server, or a man in the middle who knows the password
    /// and dropped the key). Refused with a pin, when the file records a
    /// key for `server` (a changed key), and outside password-only mode;
    /// otherwise trusted, and recorded as `password-only` at first contact.
    pub fn check_keyless(&self, server: &ServerAddr) -> Result<Trusted, Error> {
        if let Some(pinned) = self.pin {
            return Err(Error::PinnedServerHasNoKey { server: server.clone(), pinned });
        }
        match self.known_servers.lookup_auth(server, &ServerAuth::PasswordOnly)? {
            Lookup::Changed { line, known } => Err(self.changed(server, line, known, ServerAuth::PasswordOnly)),
            _ if !self.password_only => Err(Error::PasswordOnlyNotRequested { server: server.clone() }),
            Lookup::Known { line } => Ok(Trusted::Known { line }),
            Lookup::Unknown => {
                // `add_auth` re-checks under the lock, as `check` does.
                self.known_servers.add_auth(server, &ServerAuth::PasswordOnly)?;
                Ok(Trusted::Recorded { by: Approval::PasswordOnly })
            }
        }
    }

    /// The error for a server whose file line records `known` but that
    /// presented `presented`.
    fn changed(&self, server: &ServerAddr, line: usize, known: ServerAuth, presented: ServerAuth) -> Error {
        Error::ServerKeyChanged(Box::new(KeyChange {
            server: server.clone(),
            path: self.known_servers.path().to_owned(),
            line,
            known,
            presented,
        }))
    }
}
