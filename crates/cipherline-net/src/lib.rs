//! # cipherline-net: tokio drivers for the sans-IO protocol core
//!
//! The protocol core (`cipherline-proto`) does all the protocol and all the
//! crypto but touches no socket. This crate moves its bytes over any tokio
//! `AsyncRead`/`AsyncWrite` pair, for both the server and the client:
//!
//! - [`FrameReader`]: reads whole frames, cancel-safely, with the core's
//!   length checks applied before any body byte is buffered.
//! - [`accept`] and [`connect`]: the two handshakes, each bounded by a
//!   timeout, sending the right alert when they fail.
//! - [`Channel`]: an established session carrying length-prefixed
//!   application messages; key updates (by count, bytes, time and on
//!   request) happen inside it.
//!
//! Contract: every wait is bounded by a caller-supplied timeout or is
//! cancel-safe so the caller can bound it; memory per connection is bounded
//! by one frame plus one application message; errors never carry plaintext
//! or key material. Randomness is the operating system's, via the core's
//! `SystemRng`.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod channel;
mod error;
mod handshake;
mod reader;

pub use channel::{Channel, ChannelReader, ChannelWriter};
pub use error::NetError;
pub use handshake::{PendingServer, accept, connect};
pub use reader::FrameReader;
