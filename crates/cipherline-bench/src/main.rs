//! `cipherline-bench`: the load generator. See the library's docs and
//! BENCHMARKS.md; `bench/compare.sh` runs every mode against the anchors.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cipherline_bench::durable::DurableOptions;
use cipherline_bench::fanout::{FanoutOptions, MIN_SIZE};
use cipherline_bench::handshake::{HandshakeOptions, parse_suite};
use cipherline_bench::idle::IdleOptions;
use cipherline_bench::irc::MAX_IRC_SIZE;
use cipherline_bench::target::resolve_addr;
use cipherline_bench::{
    BenchError, Report, Target, TrustArgs, bulk, durable, e2e_fanout, fanout, handshake, idle, irc, privop,
};
use cipherline_proto::Suite;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator for cipherline servers: handshakes, room fan-out (also
/// over IRC, for comparison), bulk file relay, acknowledged durable
/// messages (also on NATS JetStream, for comparison) and idle connections. Only
/// loopback targets unless --allow-remote; every load is bounded.
#[derive(Debug, Parser)]
#[command(name = "cipherline-bench", version)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Full handshakes (connect, handshake, close), no application data.
    Handshake(HandshakeArgs),
    /// N clients in one room each send M messages; every client counts
    /// what it receives.
    Fanout(FanoutArgs),
    /// The fan-out load in an end-to-end room: keyed clients, one invites
    /// the others, each sends M group messages of an MLS message's size
    /// (opaque to the relay, not real MLS); every member counts and
    /// acknowledges what it receives.
    E2eFanout(E2eFanoutArgs),
    /// One client streams a file transfer through the relay to another.
    Bulk(BulkArgs),
    /// Acknowledged durable messages per second: senders send direct
    /// messages to offline recipients whose messages the server stores
    /// (or, with --protocol nats, the same load as JetStream publishes).
    Durable(DurableArgs),
    /// Holds N authenticated idle connections until SIGINT/SIGTERM, the end
    /// of standard input (with --stdin), or --hold seconds.
    Idle(IdleArgs),
    /// The server key's private-key operations per second on this core, as
    /// the server's handshake performs them (no network).
    PrivateOp(PrivateOpArgs),
}

#[derive(Debug, Args)]
struct PrivateOpArgs {
    /// The server's private key file (RSA or X25519, PEM).
    #[arg(long, value_name = "PATH")]
    key: std::path::PathBuf,
    /// Seconds to run.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Print one JSON object instead of key: value lines.
    #[arg(long)]
    json: bool,
}

/// Flags every mode takes.
#[derive(Debug, Args)]
struct Common {
    /// The server, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5555")]
    server: String,
    /// Print one JSON object instead of key: value lines.
    #[arg(long)]
    json: bool,
    /// Also report the server's CPU time (and, for idle, memory), read from
    /// /proc/PID (the server must run on this machine).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
    /// Another node of the same relay (same key), HOST:PORT; repeat for
    /// more. fanout and durable spread their clients over --server and
    /// these in turn.
    #[arg(long = "node", value_name = "HOST:PORT")]
    nodes: Vec<String>,
    /// The process of each --node, for CPU time (added to --server-pid's)
    /// and memory per node.
    #[arg(long = "node-pid", value_name = "PID")]
    node_pids: Vec<u32>,
}

impl Common {
    /// The target, with the further nodes.
    async fn target(&self, trust: &TrustArgs) -> Result<Arc<Target>, BenchError> {
        let target = Target::resolve(&self.server, trust, self.allow_remote).await?;
        Ok(Arc::new(target.with_nodes(&self.nodes, self.allow_remote).await?))
    }

    /// Refuses --node for a load that uses one server.
    fn one_server(&self, what: &str) -> Result<(), BenchError> {
        if self.nodes.is_empty() && self.node_pids.is_empty() {
            Ok(())
        } else {
            Err(BenchError::Usage(format!("--node and --node-pid are for cipherline fanout and durable, not {what}")))
        }
    }

    /// Every node's process: --server-pid, then each --node-pid.
    fn pids(&self) -> Vec<u32> {
        self.server_pid.into_iter().chain(self.node_pids.iter().copied()).collect()
    }
}

#[derive(Debug, Args)]
struct HandshakeArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    trust: TrustArgs,
    /// The suite to offer, as a code point (0x0121) or a name.
    #[arg(long, default_value = "0x0121", value_parser = parse_suite)]
    suite: Suite,
    /// Handshakes in flight at once (a server allows
    /// `max_handshakes_per_ip`, default 16, from one address, and
    /// `new_connections_per_ip_per_sec`, default 4 with a burst of 16, and
    /// `max_sessions_per_ip`, default 32: lift them for a benchmark).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Stop after this many handshakes.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Protocol {
    Cipherline,
    Irc,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    trust: TrustArgs,
    /// cipherline, or plain IRC (NICK/USER/JOIN/PRIVMSG) for comparison.
    #[arg(long, value_enum, default_value = "cipherline")]
    protocol: Protocol,
    /// Clients in the room.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(2..=2000))]
    clients: u32,
    /// Messages each client sends.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    messages: u32,
    /// Bytes of text per message (at least 17: the send timestamp).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages per second per client; 0 floods (as fast as the connection
    /// takes them).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds the run may take once every client is in the room.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// The room (channel, for IRC).
    #[arg(long, default_value = "bench")]
    room: String,
    /// Client names are this plus a number.
    #[arg(long, default_value = "b")]
    name_prefix: String,
}

#[derive(Debug, Args)]
struct E2eFanoutArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    trust: TrustArgs,
    /// Clients in the room (a server keeps at most
    /// `max_queued_messages_per_recipient`, default 10,000, for each; the
    /// members acknowledge as they read).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(2..=1000))]
    clients: u32,
    /// Messages each client sends.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    messages: u32,
    /// Bytes of text per message, as a person would type (at least 17);
    /// the relay carries an MLS message of the size this text makes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages per second per client; 0 floods.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds the run may take once the room is set up.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// The room's name starts with this; a suffix makes it unique per run.
    #[arg(long, default_value = "e2e")]
    room: String,
    /// Client names are this plus a number (keyed users: a name is bound
    /// to the bench key that first used it).
    #[arg(long, default_value = "e")]
    name_prefix: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Store {
    Cipherline,
    Nats,
}

#[derive(Debug, Args)]
struct DurableArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    trust: TrustArgs,
    /// cipherline, or a NATS JetStream stream for comparison (then
    /// --server is the NATS server, HOST:PORT, and --server-pid
    /// nats-server's process).
    #[arg(long, value_enum, default_value = "cipherline")]
    protocol: Store,
    /// Sending connections.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    senders: u32,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    messages: u32,
    /// Bytes per message.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    size: u32,
    /// Unacknowledged messages one connection may have in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    window: u32,
    /// Offline recipients with stored queues (a server keeps at most
    /// `max_queued_messages_per_recipient`, default 10,000, for each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    recipients: u32,
    /// Seconds the run may take once every sender is connected.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Names are this plus s or r and a number.
    #[arg(long, default_value = "d")]
    name_prefix: String,
}

#[derive(Debug, Args)]
struct BulkArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    trust: TrustArgs,
    /// Bytes to transfer.
    #[arg(long, default_value_t = 256 << 20, value_parser = clap::value_parser!(u64).range(1..=(64u64 << 30)))]
    bytes: u64,
    /// Seconds the transfer may take.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Client names are this plus "tx" and "rx".
    #[arg(long, default_value = "bulk")]
    name_prefix: String,
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    trust: TrustArgs,
    /// Connections to hold.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// Handshakes in flight at once while opening them (a server allows
    /// `max_handshakes_per_ip`, default 16, from one address, and
    /// `new_connections_per_ip_per_sec`, default 4 with a burst of 16, and
    /// `max_sessions_per_ip`, default 32: lift them for a benchmark).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Seconds to hold them at most.
    #[arg(long, default_value_t = 60.0)]
    hold: f64,
    /// Also stop when standard input reaches its end.
    #[arg(long)]
    stdin: bool,
    /// Client names are this plus a number.
    #[arg(long, default_value = "idle")]
    name_prefix: String,
}

/// A time limit from the command line: positive and at most an hour.
fn seconds(flag: &str, value: f64) -> Result<Duration, BenchError> {
    if !(value > 0.0 && value <= 3600.0) {
        return Err(BenchError::Usage(format!("--{flag} must be more than 0 and at most 3600 seconds")));
    }
    Ok(Duration::from_secs_f64(value))
}

fn print(report: &Report, json: bool) {
    let mut out = std::io::stdout().lock();
    let text = if json { report.to_json() + "\n" } else { report.to_text() };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

async fn run(mode: Mode) -> Result<(Report, bool), BenchError> {
    match mode {
        Mode::Handshake(a) => {
            a.common.one_server("handshake")?;
            let target = Arc::new(Target::resolve(&a.common.server, &a.trust, a.common.allow_remote).await?);
            let opts = HandshakeOptions {
                suite: a.suite,
                concurrency: a.concurrency as usize,
                duration: seconds("duration", a.duration)?,
                max_handshakes: a.max,
            };
            Ok((handshake::run(target, &opts, a.common.server_pid).await?, a.common.json))
        }
        Mode::Fanout(a) => {
            let max_size = match a.protocol {
                Protocol::Cipherline => 60_000,
                Protocol::Irc => MAX_IRC_SIZE,
            };
            if !(MIN_SIZE..=max_size).contains(&a.size) {
                return Err(BenchError::Usage(format!("--size must be {MIN_SIZE} to {max_size} bytes")));
            }
            if !(a.rate >= 0.0 && a.rate <= 100_000.0) {
                return Err(BenchError::Usage("--rate must be 0 (flood) to 100000 messages per second".into()));
            }
            let expected = u64::from(a.clients) * u64::from(a.messages) * u64::from(a.clients - 1);
            if expected > 100_000_000 {
                return Err(BenchError::Usage("clients × messages × (clients − 1) must be at most 10^8".into()));
            }
            let opts = FanoutOptions {
                clients: a.clients as usize,
                messages: a.messages as usize,
                size: a.size,
                rate: a.rate,
                timeout: seconds("timeout", a.timeout)?,
                room: a.room,
                name_prefix: a.name_prefix,
            };
            let report = match a.protocol {
                Protocol::Cipherline => fanout::run(a.common.target(&a.trust).await?, &opts, &a.common.pids()).await?,
                Protocol::Irc => {
                    a.common.one_server("irc")?;
                    let addr = resolve_addr(&a.common.server, a.common.allow_remote).await?;
                    irc::run(addr, &opts, a.common.server_pid).await?
                }
            };
            Ok((report, a.common.json))
        }
        Mode::E2eFanout(a) => {
            a.common.one_server("e2e-fanout")?;
            if !(MIN_SIZE..=30_000).contains(&a.size) {
                return Err(BenchError::Usage(format!("--size must be {MIN_SIZE} to 30000 bytes")));
            }
            if !(a.rate >= 0.0 && a.rate <= 100_000.0) {
                return Err(BenchError::Usage("--rate must be 0 (flood) to 100000 messages per second".into()));
            }
            let expected = u64::from(a.clients) * u64::from(a.messages) * u64::from(a.clients - 1);
            if expected > 100_000_000 {
                return Err(BenchError::Usage("clients × messages × (clients − 1) must be at most 10^8".into()));
            }
            let opts = FanoutOptions {
                clients: a.clients as usize,
                messages: a.messages as usize,
                size: a.size,
                rate: a.rate,
                timeout: seconds("timeout", a.timeout)?,
                room: a.room,
                name_prefix: a.name_prefix,
            };
            let target = Arc::new(Target::resolve(&a.common.server, &a.trust, a.common.allow_remote).await?);
            Ok((e2e_fanout::run(target, &opts, a.common.server_pid).await?, a.common.json))
        }
        Mode::Bulk(a) => {
            a.common.one_server("bulk")?;
            let target = Arc::new(Target::resolve(&a.common.server, &a.trust, a.common.allow_remote).await?);
            let limit = seconds("timeout", a.timeout)?;
            Ok((bulk::run(target, a.bytes, limit, &a.name_prefix, a.common.server_pid).await?, a.common.json))
        }
        Mode::Durable(a) => {
            let opts = DurableOptions {
                senders: a.senders as usize,
                messages: a.messages as usize,
                size: a.size as usize,
                window: a.window as usize,
                recipients: a.recipients as usize,
                timeout: seconds("timeout", a.timeout)?,
                name_prefix: a.name_prefix,
            };
            let report = match a.protocol {
                Store::Cipherline => durable::run(a.common.target(&a.trust).await?, &opts, &a.common.pids()).await?,
                Store::Nats => {
                    a.common.one_server("nats")?;
                    let addr = resolve_addr(&a.common.server, a.common.allow_remote).await?;
                    durable::run_nats(&format!("nats://{addr}"), &opts, a.common.server_pid).await?
                }
            };
            Ok((report, a.common.json))
        }
        Mode::PrivateOp(a) => Ok((privop::run(&a.key, seconds("duration", a.duration)?)?, a.json)),
        Mode::Idle(a) => {
            a.common.one_server("idle")?;
            let target = Arc::new(Target::resolve(&a.common.server, &a.trust, a.common.allow_remote).await?);
            let opts = IdleOptions {
                connections: a.connections as usize,
                concurrency: a.concurrency as usize,
                hold: seconds("hold", a.hold)?,
                name_prefix: a.name_prefix,
            };
            let json = a.common.json;
            // The one report is printed when every connection is up; the
            // harness reads it, measures, then stops the generator.
            let report = idle::run(target, &opts, a.common.server_pid, a.stdin, |r| print(r, json)).await?;
            if !json {
                eprintln!(
                    "released; dropped by the server while held: {}",
                    report.fields.get("dropped_while_held").cloned().unwrap_or_default()
                );
            }
            Ok((report, false))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread: the harness pins the generator to one core, and the
    // client library's trust callback needs a local task set.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cipherline-bench: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let idle = matches!(cli.mode, Mode::Idle(_));
    match tokio::task::LocalSet::new().block_on(&runtime, run(cli.mode)) {
        Ok((report, json)) => {
            if !idle {
                print(&report, json);
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                eprintln!("cipherline-bench: the run fell short (see shortfall / errors / first_error)");
                ExitCode::from(1)
            }
        }
        Err(e @ BenchError::Usage(_)) => {
            eprintln!("cipherline-bench: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("cipherline-bench: {e}");
            ExitCode::from(1)
        }
    }
}
