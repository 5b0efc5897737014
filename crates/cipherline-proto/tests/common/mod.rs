//! In-memory test harness: a client and a server wired together with a
//! simulated clock and seeded RNGs, and a hook to tamper with every flight.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherline_proto::crypto::SeededRng;
use cipherline_proto::crypto::kem::ServerKey;
use cipherline_proto::handshake::client::ExpectServerIdentity;
use cipherline_proto::handshake::server::{ExpectClientHello, ServerStep};
use cipherline_proto::{ClientConfig, Deframer, Error, Frame, Received, ServerConfig, Session};

/// Reads a test key from the repo's testdata.
pub fn testdata(path: &str) -> Vec<u8> {
    let full = format!("{}/../../testdata/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

pub fn rsa_key(bits: usize) -> Arc<ServerKey> {
    Arc::new(ServerKey::rsa_from_pkcs8(&testdata(&format!("keys/rsa{bits}.pk8.der"))).unwrap())
}

pub fn x25519_key() -> Arc<ServerKey> {
    Arc::new(ServerKey::x25519_from_bytes(&[0x42; 32]).unwrap())
}

/// A simulated clock.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn new() -> Self {
        Clock(Instant::now())
    }
    pub fn advance(&mut self, d: Duration) {
        self.0 += d;
    }
}

/// Which flight of the handshake a tamper hook sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flight {
    /// Server → client: ServerIdentity.
    ServerIdentity,
    /// Client → server: ClientHello.
    ClientHello,
    /// Server → client: ServerHello + encrypted Finished.
    ServerHelloFinished,
    /// Client → server: [ClientAuth] + Finished.
    ClientFinish,
}

pub const FLIGHTS: [Flight; 4] =
    [Flight::ServerIdentity, Flight::ClientHello, Flight::ServerHelloFinished, Flight::ClientFinish];

/// How a handshake ended.
#[derive(Debug)]
pub enum Failure {
    /// The client refused (before it had a session).
    Client(Error),
    /// The server refused.
    Server(Error),
    /// A side is waiting for bytes that will never come (a real driver's
    /// handshake timeout ends this).
    Stalled(Flight),
}

impl Failure {
    pub fn client_error(&self) -> Option<&Error> {
        match self {
            Failure::Client(e) => Some(e),
            _ => None,
        }
    }
}

/// Takes every whole frame from `bytes`; `Err(None)` if incomplete.
fn frames(bytes: &[u8]) -> Result<Vec<Frame>, Option<Error>> {
    let mut d = Deframer::new();
    d.push(bytes);
    let mut out = Vec::new();
    loop {
        match d.next_frame() {
            Ok(Some(f)) => out.push(f),
            Ok(None) => break,
            Err(e) => return Err(Some(e.into())),
        }
    }
    if d.buffered() != 0 || out.is_empty() {
        return Err(None);
    }
    Ok(out)
}

pub struct Handshake {
    pub client: Session,
    pub server: Session,
    /// Every flight as it was delivered.
    pub flights: Vec<(Flight, Vec<u8>)>,
}

/// Runs a full handshake; `tamper` may change any flight's bytes in transit.
/// `on_server_key` plays the caller's trust decision (return false to refuse).
pub fn handshake_with(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    seed: u8,
    clock: Clock,
    mut tamper: impl FnMut(Flight, &mut Vec<u8>),
) -> Result<Handshake, Failure> {
    let mut crng = SeededRng::new_for_testing_only([seed; 32]);
    let mut srng = SeededRng::new_for_testing_only([seed ^ 0xff; 32]);
    let now = clock.0;
    let mut flights = Vec::new();
    let mut deliver = |flight: Flight, mut bytes: Vec<u8>| {
        tamper(flight, &mut bytes);
        flights.push((flight, bytes.clone()));
        bytes
    };

    let (s_state, si) = ExpectClientHello::new(server).map_err(Failure::Server)?;
    let si = deliver(Flight::ServerIdentity, si);
    let c_state = ExpectServerIdentity::new(client).map_err(Failure::Client)?;
    let si_frames = frames(&si).map_err(|e| e.map_or(Failure::Stalled(Flight::ServerIdentity), Failure::Client))?;
    let [si_frame] = si_frames.as_slice() else {
        return Err(Failure::Client(Error::Decode(cipherline_proto::error::DecodeError::TrailingBytes)));
    };
    let c_state = c_state.handle_server_identity(si_frame).map_err(Failure::Client)?;
    let (c_state, ch) = c_state.into_client_hello(&mut crng).map_err(Failure::Client)?;

    let ch = deliver(Flight::ClientHello, ch);
    let ch_frames = frames(&ch).map_err(|e| e.map_or(Failure::Stalled(Flight::ClientHello), Failure::Server))?;
    let [ch_frame] = ch_frames.as_slice() else {
        return Err(Failure::Server(Error::Decode(cipherline_proto::error::DecodeError::TrailingBytes)));
    };
    let (mut s_state, sh_sf) = s_state.handle_client_hello(ch_frame, &mut srng, now).map_err(Failure::Server)?;

    let sh_sf = deliver(Flight::ServerHelloFinished, sh_sf);
    let sh_frames =
        frames(&sh_sf).map_err(|e| e.map_or(Failure::Stalled(Flight::ServerHelloFinished), Failure::Client))?;
    let mut it = sh_frames.iter();
    let c_state = c_state.handle_server_hello(it.next().ok_or(Failure::Stalled(Flight::ServerHelloFinished))?, now);
    let c_state = c_state.map_err(Failure::Client)?;
    let sf = it.next().ok_or(Failure::Stalled(Flight::ServerHelloFinished))?;
    let (client_session, cf) = c_state.handle_server_finished(sf, now).map_err(Failure::Client)?;
    if it.next().is_some() {
        return Err(Failure::Client(Error::PeerMisbehaved(cipherline_proto::error::Misbehavior::UnexpectedMessage)));
    }

    let cf = deliver(Flight::ClientFinish, cf);
    let cf_frames = frames(&cf).map_err(|e| e.map_or(Failure::Stalled(Flight::ClientFinish), Failure::Server))?;
    let mut server_session = None;
    for f in &cf_frames {
        match s_state.handle_frame(f, now).map_err(Failure::Server)? {
            ServerStep::Continue(next) => s_state = next,
            ServerStep::Done(s) => {
                server_session = Some(s);
                break;
            }
        }
        if server_session.is_some() {
            break;
        }
    }
    let server_session = server_session.ok_or(Failure::Stalled(Flight::ClientFinish))?;
    Ok(Handshake { client: client_session, server: server_session, flights })
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handshake({})", self.client.suite())
    }
}

pub fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> Handshake {
    handshake_with(client, server, 1, Clock::new(), |_, _| {}).unwrap()
}

/// Delivers `bytes` (one or more frames) to `to`, collecting what it received.
pub fn deliver(to: &mut Session, bytes: &[u8], now: Instant) -> Result<Vec<Received>, Error> {
    let mut d = Deframer::new();
    d.push(bytes);
    let mut out = Vec::new();
    while let Some(f) = d.next_frame()? {
        out.push(to.handle_frame(&f, now)?);
    }
    d.finish()?;
    Ok(out)
}

/// Concatenates the application data in `received`.
pub fn data(received: &[Received]) -> Vec<u8> {
    received
        .iter()
        .filter_map(|r| match r {
            Received::Data(d) => Some(d.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

pub fn client_config() -> Arc<ClientConfig> {
    Arc::new(ClientConfig::default())
}

pub fn server_config(key: Arc<ServerKey>) -> Arc<ServerConfig> {
    Arc::new(ServerConfig::new(key))
}
