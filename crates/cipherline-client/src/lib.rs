//! # cipherline-client: the client library
//!
//! Connects to a cipherline server over TCP, runs the handshake, lets the
//! caller decide whether to trust the server's key (a [`TrustCheck`]: pin,
//! known-servers file, prompt) before anything secret is sent, says Hello,
//! and then sends and receives application messages (PROTOCOL.md §13).
//!
//! Contract: every network wait is bounded by [`Options`] timeouts or is a
//! plain `recv` the caller can bound; a server that refuses something
//! produces a [`ClientError::Refused`] with the server's code and text;
//! nothing here prints or logs message text.
//!
//! Modules: [`client`], [`engine`] (the client engine every front-end
//! runs on: commands in, typed events out, reconnection), [`local`] (the local store: history, seen message
//! ids, remembered peer keys and queue cursors in one SQLite file),
//! [`peers`] (remembered peer keys and message verdicts), [`seen`] (message
//! ids already shown in this process), [`transfer`] (file transfer state),
//! [`files`] (end-to-end files: upload, download, their local records),
//! [`display`] (escaping every peer-supplied string before a terminal sees
//! it), [`error`].

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod client;
pub mod conversations;
pub mod delivery;
pub mod display;
pub mod engine;
pub mod error;
pub mod files;
pub mod groups;
mod known_peers;
pub mod local;
pub mod peers;
pub mod seen;
pub mod transfer;

pub use client::{Acked, Client, ClientReader, ClientWriter, Options, SessionInfo, TrustCheck};
pub use error::ClientError;
pub use local::LocalStore;
