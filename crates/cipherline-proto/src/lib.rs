//! # cipherline-proto: the sans-IO core of the cipherline protocol
//!
//! This crate is the whole protocol and nothing but the protocol: bytes in,
//! bytes and events out. It has no sockets, no threads, no async runtime, no
//! clock reads and no OS randomness of its own: the caller passes the current
//! time (`now: Instant`) and a random number generator ([`crypto::Rng`]) into
//! every call that needs them, so a test can drive both ends in memory with a
//! simulated clock and a seeded RNG and get the same bytes every time
//! (PROTOCOL.md appendix A). The one exception is randomness aws-lc-rs draws
//! internally where its API takes no RNG (see [`crypto`]).
//!
//! ## Contract
//!
//! - Every byte sequence a peer can send either parses canonically or yields
//!   an [`Error`]; nothing panics and every length is checked against a bound
//!   before anything is allocated for it. "Incomplete" (`Ok(None)` from
//!   [`frame::Deframer::next_frame`]) is distinct from "invalid" (`Err`).
//! - A client never gets a [`session::Session`] (and so cannot send
//!   application data) before the server proved possession of the private key
//!   the client encapsulated to, after the caller approved that key.
//! - Secrets are zeroized on drop and implement neither `Debug` nor `Display`;
//!   no error carries key material, plaintext or raw peer bytes.
//! - The wire format is specified byte for byte in PROTOCOL.md; the two must
//!   change together.
//!
//! ## Modules
//!
//! - [`frame`]: cutting the stream into frames.
//! - [`codec`]: the strict field reader/writer.
//! - [`message`]: handshake messages.
//! - [`suite`]: cipher suites and code points.
//! - [`crypto`]: the aws-lc-rs provider (AEAD, KEMs, signatures, HKDF, RNG).
//! - [`keyschedule`]: HKDF key schedule over the transcript.
//! - [`record`]: padded AEAD records and the key ratchet.
//! - [`handshake`]: client and server handshake typestates.
//! - [`session`]: an established session.
//! - [`signature`]: end-to-end signatures on chat messages.
//! - [`app`]: the application messages carried inside records.
//! - [`filestream`]: the chunk format of end-to-end files (STREAM over AES-256-GCM).
//! - [`charclass`]: characters peers may not show raw (controls, bidi, format).
//! - [`alert`], [`error`]: why connections close.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod alert;
pub mod app;
pub mod charclass;
pub mod codec;
pub mod crypto;
pub mod error;
pub mod filestream;
pub mod frame;
pub mod handshake;
pub mod keyschedule;
pub mod message;
pub mod record;
pub mod session;
pub mod signature;
pub mod suite;

pub use alert::AlertCode;
pub use error::Error;
pub use frame::{Deframer, Frame, FrameKind};
pub use handshake::{ClientConfig, ServerConfig};
pub use session::{Received, Role, Session};
pub use suite::Suite;
