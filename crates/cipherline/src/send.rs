//! `cipherline send`: one-shot messages (and files) for scripts.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::time::Duration;

use cipherline_client::{Client, ClientError};
use cipherline_proto::app::{ErrorCode, RateLimits, ServerMessage, Target};
use clap::Args;

use crate::client_args::ClientArgs;
use crate::error::CliError;
use crate::files;
use crate::output::{key_notice, print_message};

/// Send messages (or a file) and exit once the server has acknowledged
/// each one. With no MESSAGE and no --file, every line of standard input
/// is sent as one message.
///
/// Lines are paced to the server's rate limits: a line the server refuses
/// as too fast is sent again after a pause (a few times at most), and a
/// line that cannot be delivered is reported by its number.
///
/// Exit codes (the table in README.md): 0 all acknowledged; 2 usage; 3 the
/// server's key was not trusted; 4 the server could not be reached; 5 the
/// server refused (e.g. unknown user); 6 the name is taken; 7 the server
/// stopped answering; 1 anything else.
#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// The room to send to (joined first).
    #[arg(long, value_name = "ROOM", default_value = "lobby", conflicts_with = "to")]
    pub room: String,

    /// Send a direct message to this user instead of a room.
    #[arg(long, value_name = "USER")]
    pub to: Option<String>,

    /// Send this file (the receiver must accept it).
    #[arg(long, value_name = "PATH", conflicts_with = "message")]
    pub file: Option<PathBuf>,

    /// Seconds to wait for the receiver to accept a file.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub answer_timeout: u64,

    /// After sending, print messages that arrive for this many seconds
    /// (a round trip: ask, then read the answer).
    #[arg(long, value_name = "SECONDS")]
    pub wait_reply: Option<u64>,

    /// The message; several words are joined with spaces.
    #[arg(value_name = "MESSAGE")]
    pub message: Vec<String>,
}

/// Runs `send`.
pub async fn run(args: &SendArgs) -> Result<(), CliError> {
    // Before connecting: a directory or FIFO is refused, never offered.
    if let Some(path) = &args.file {
        files::open_regular(path)?;
    }
    let connected = args.client.connect(true).await?;
    let (mut client, mut peers) = (connected.client, connected.peers);
    let target = match &args.to {
        Some(user) => Target::User(user.clone()),
        None => {
            client.join(&args.room).await?;
            Target::Room(args.room.clone())
        }
    };
    // The Join took one of the server's message tokens.
    let mut pacer = Pacer::new(client.info().rates, u32::from(args.to.is_none()));
    if let Some(path) = &args.file {
        files::send_file(&mut client, target.clone(), path, Duration::from_secs(args.answer_timeout)).await?;
    } else if args.message.is_empty() {
        let stdin = std::io::stdin();
        for (index, line) in stdin.lock().lines().enumerate() {
            let number = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
            let line = line.map_err(|e| CliError::failed(format!("reading standard input: {e}"), "check the pipe"))?;
            if !line.is_empty() {
                pacer
                    .send(&mut client, &target, &line)
                    .await
                    .map_err(|e| CliError::Line { line: number, error: Box::new(e) })?;
            }
        }
    } else {
        pacer.send(&mut client, &target, &args.message.join(" ")).await?;
    }
    if let Some(secs) = args.wait_reply {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while let Ok(msg) = tokio::time::timeout_at(deadline, client.recv()).await {
            if let ServerMessage::Message(d) = msg? {
                let status = peers.check(&d);
                if let Some(notice) = key_notice(&d, &status) {
                    eprintln!("{notice}");
                }
                print_message(&d, client.name(), &status, false);
            }
        }
    }
    let _ = client.close().await;
    Ok(())
}

/// How often one message is sent again after the server said it came too
/// fast, and the longest pause between tries: together they bound how long
/// one line may take (about 10 s) when the server keeps refusing it.
const RETRIES: u32 = 8;
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

/// Keeps `send` under the server's message rate (PROTOCOL.md §13.5).
///
/// The server announces its message bucket in Welcome; the pacer keeps a
/// copy of it and waits for a token before each message, so a long pipe
/// goes out at the rate the server allows from the start. The copy can
/// drift (the byte bucket, which depends on a room's audience, is not
/// modelled), so a message the server still refuses with `rate_limited`
/// (the connection stays) is sent again after a pause that doubles each
/// time, a few times at most.
struct Pacer {
    /// The server's message bucket as this client counts it; `None` when
    /// the server announced no rate.
    bucket: Option<Bucket>,
    /// The pause before the next retry; it grows while the server keeps
    /// refusing and starts over after a delivery.
    pause: Option<Duration>,
}

/// A token bucket like the server's: `rate` tokens a second, `burst` at most.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: tokio::time::Instant,
}

impl Pacer {
    /// A pacer for a session whose limits are `rates`, in which `sent`
    /// metered messages (a Join) were already sent since Welcome.
    fn new(rates: RateLimits, sent: u32) -> Self {
        let bucket = (rates.messages_per_sec > 0 && rates.burst > 0).then(|| {
            let burst = f64::from(rates.burst);
            Bucket {
                tokens: (burst - f64::from(sent)).max(0.0),
                rate: f64::from(rates.messages_per_sec),
                burst,
                last: tokio::time::Instant::now(),
            }
        });
        Pacer { bucket, pause: None }
    }

    /// Waits until the server's bucket (as counted here) has a token, and
    /// takes it.
    async fn wait_turn(&mut self) {
        let Some(b) = &mut self.bucket else { return };
        let refill = |b: &mut Bucket| {
            let now = tokio::time::Instant::now();
            b.tokens = (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * b.rate).min(b.burst);
            b.last = now;
        };
        refill(b);
        if b.tokens < 1.0 {
            let wait = Duration::try_from_secs_f64((1.0 - b.tokens) / b.rate).unwrap_or(LONGEST_PAUSE);
            tokio::time::sleep(wait.min(LONGEST_PAUSE)).await;
            refill(b);
        }
        b.tokens = (b.tokens - 1.0).max(0.0);
    }

    /// Sends `text` and waits for its acknowledgement, pacing it and
    /// retrying while the server says it comes too fast.
    async fn send(&mut self, client: &mut Client, to: &Target, text: &str) -> Result<(), CliError> {
        let mut tries = 0;
        loop {
            self.wait_turn().await;
            match client.send_acked(to.clone(), text).await {
                Ok(_) => {
                    self.pause = None;
                    return Ok(());
                }
                Err(ClientError::Refused { code: ErrorCode::RateLimited, .. }) if tries < RETRIES => {
                    tries += 1;
                    let pause = self.pause.map_or(FIRST_PAUSE, |p| (p * 2).min(LONGEST_PAUSE));
                    self.pause = Some(pause);
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
