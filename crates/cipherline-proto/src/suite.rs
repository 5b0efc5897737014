//! Cipher suites: which static KEM, ephemeral KEM and AEAD a connection uses
//! (PROTOCOL.md §5).
//!
//! A suite's 16-bit code point is structured: the high byte names the static
//! KEM, the high nibble of the low byte the ephemeral KEM, and the low nibble
//! the AEAD. So `0x0121` is RSA-OAEP-SHA256 + X25519MLKEM768 + AES-256-GCM.

use core::fmt;

/// How the client encapsulates a secret to the server's long-term key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StaticKem {
    /// No static key: password mode alone authenticates the server
    /// (PROTOCOL.md §7.7). Only valid with the PAKE extension.
    None,
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256, 2048 to 4096-bit keys.
    RsaOaepSha256,
    /// X25519 against the server's static X25519 key (DHKEM-style).
    X25519,
}

/// The ephemeral key exchange that gives forward secrecy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EphemeralKem {
    /// No ephemeral exchange: no forward secrecy (seed-faithful, opt-in only).
    None,
    /// X25519 (RFC 7748).
    X25519,
    /// X25519 combined with ML-KEM-768, in the X25519MLKEM768 layout.
    X25519MlKem768,
}

/// The record-layer AEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Aead {
    /// AES-256-GCM (hardware-accelerated where AES-NI exists).
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439).
    ChaCha20Poly1305,
}

/// One complete suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Suite {
    /// Static KEM to the server's long-term key.
    pub static_kem: StaticKem,
    /// Ephemeral KEM for forward secrecy.
    pub ephemeral_kem: EphemeralKem,
    /// AEAD for records.
    pub aead: Aead,
}

impl Suite {
    /// Every suite with forward secrecy, strongest first: the default
    /// preference order of a client.
    pub const FORWARD_SECRET: [Suite; 8] = [
        Suite::new(StaticKem::RsaOaepSha256, EphemeralKem::X25519MlKem768, Aead::Aes256Gcm),
        Suite::new(StaticKem::X25519, EphemeralKem::X25519MlKem768, Aead::Aes256Gcm),
        Suite::new(StaticKem::RsaOaepSha256, EphemeralKem::X25519MlKem768, Aead::ChaCha20Poly1305),
        Suite::new(StaticKem::X25519, EphemeralKem::X25519MlKem768, Aead::ChaCha20Poly1305),
        Suite::new(StaticKem::RsaOaepSha256, EphemeralKem::X25519, Aead::Aes256Gcm),
        Suite::new(StaticKem::X25519, EphemeralKem::X25519, Aead::Aes256Gcm),
        Suite::new(StaticKem::RsaOaepSha256, EphemeralKem::X25519, Aead::ChaCha20Poly1305),
        Suite::new(StaticKem::X25519, EphemeralKem::X25519, Aead::ChaCha20Poly1305),
    ];

    /// Password-only suites (no server key; the password authenticates
    /// both sides), strongest first. Chosen only by a client that has a
    /// password, from a server that asks for one.
    pub const PASSWORD_ONLY: [Suite; 4] = [
        Suite::new(StaticKem::None, EphemeralKem::X25519MlKem768, Aead::Aes256Gcm),
        Suite::new(StaticKem::None, EphemeralKem::X25519MlKem768, Aead::ChaCha20Poly1305),
        Suite::new(StaticKem::None, EphemeralKem::X25519, Aead::Aes256Gcm),
        Suite::new(StaticKem::None, EphemeralKem::X25519, Aead::ChaCha20Poly1305),
    ];

    /// The seed-faithful suite: RSA-OAEP only, no forward secrecy. Accepted
    /// only by peers configured with `dangerous_allow_no_forward_secrecy`.
    pub const SEED_FAITHFUL: Suite = Suite::new(StaticKem::RsaOaepSha256, EphemeralKem::None, Aead::Aes256Gcm);

    /// Builds a suite from its parts (not every combination is valid; see
    /// [`Suite::from_u16`]).
    #[must_use]
    pub const fn new(static_kem: StaticKem, ephemeral_kem: EphemeralKem, aead: Aead) -> Self {
        Suite { static_kem, ephemeral_kem, aead }
    }

    /// The 16-bit code point.
    #[must_use]
    pub fn to_u16(self) -> u16 {
        let s: u16 = match self.static_kem {
            StaticKem::None => 0x00,
            StaticKem::RsaOaepSha256 => 0x01,
            StaticKem::X25519 => 0x02,
        };
        let e: u16 = match self.ephemeral_kem {
            EphemeralKem::None => 0x0,
            EphemeralKem::X25519 => 0x1,
            EphemeralKem::X25519MlKem768 => 0x2,
        };
        let a: u16 = match self.aead {
            Aead::Aes256Gcm => 0x1,
            Aead::ChaCha20Poly1305 => 0x2,
        };
        (s << 8) | (e << 4) | a
    }

    /// Parses a code point; `None` for unknown or disallowed combinations
    /// (the only suite without an ephemeral KEM is [`Suite::SEED_FAITHFUL`];
    /// a suite without a static KEM must have an ephemeral one).
    #[must_use]
    pub fn from_u16(v: u16) -> Option<Self> {
        let static_kem = match v >> 8 {
            0x00 => StaticKem::None,
            0x01 => StaticKem::RsaOaepSha256,
            0x02 => StaticKem::X25519,
            _ => return None,
        };
        let ephemeral_kem = match (v >> 4) & 0xf {
            0x0 => EphemeralKem::None,
            0x1 => EphemeralKem::X25519,
            0x2 => EphemeralKem::X25519MlKem768,
            _ => return None,
        };
        let aead = match v & 0xf {
            0x1 => Aead::Aes256Gcm,
            0x2 => Aead::ChaCha20Poly1305,
            _ => return None,
        };
        let suite = Suite { static_kem, ephemeral_kem, aead };
        if suite.ephemeral_kem == EphemeralKem::None && suite != Suite::SEED_FAITHFUL {
            return None;
        }
        Some(suite)
    }

    /// Whether recording traffic and later stealing the server key is harmless.
    #[must_use]
    pub fn has_forward_secrecy(self) -> bool {
        self.ephemeral_kem != EphemeralKem::None
    }

    /// Whether the server has no static key (password mode alone).
    #[must_use]
    pub fn is_password_only(self) -> bool {
        self.static_kem == StaticKem::None
    }

    /// Whether the suite resists a future quantum attacker recording traffic.
    #[must_use]
    pub fn is_post_quantum(self) -> bool {
        self.ephemeral_kem == EphemeralKem::X25519MlKem768
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.static_kem {
            StaticKem::None => "PASSWORD-ONLY",
            StaticKem::RsaOaepSha256 => "RSA-OAEP-SHA256",
            StaticKem::X25519 => "X25519",
        };
        let e = match self.ephemeral_kem {
            EphemeralKem::None => "NO-EPHEMERAL",
            EphemeralKem::X25519 => "X25519",
            EphemeralKem::X25519MlKem768 => "X25519MLKEM768",
        };
        let a = match self.aead {
            Aead::Aes256Gcm => "AES-256-GCM",
            Aead::ChaCha20Poly1305 => "CHACHA20-POLY1305",
        };
        write!(f, "{s}+{e}+{a}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_points_round_trip_and_reject_unknown() {
        let mut valid = 0;
        for v in 0..=u16::MAX {
            if let Some(s) = Suite::from_u16(v) {
                assert_eq!(s.to_u16(), v);
                valid += 1;
            }
        }
        // 3 static (none, RSA, X25519) x 2 ephemeral x 2 AEAD, plus the one
        // seed-faithful suite.
        assert_eq!(valid, 13);
        assert_eq!(Suite::PASSWORD_ONLY[0].to_u16(), 0x0021);
        assert_eq!(Suite::from_u16(0x0001), None, "no static and no ephemeral KEM");
        assert_eq!(Suite::FORWARD_SECRET[0].to_u16(), 0x0121);
        assert_eq!(Suite::SEED_FAITHFUL.to_u16(), 0x0101);
        assert_eq!(Suite::from_u16(0x0201), None, "X25519 static without ephemeral");
        assert_eq!(Suite::from_u16(0x0102), None, "no-FS with ChaCha is not defined");
    }
}
