//! `fanout --protocol irc`: the fan-out load of [`crate::fanout`] over plain
//! IRC (RFC 2812: NICK, USER, JOIN, PRIVMSG), so an IRC server such as
//! ngircd does exactly the same work, driven by the same generator.
//!
//! Each client registers, joins `#room`, waits for the end of the NAMES
//! list, and then sends `PRIVMSG #room :<text>` lines, one write per
//! message as the cipherline client does. PINGs are answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;
use tokio::time::{sleep_until, timeout, timeout_at};

use crate::fanout::{FanoutOptions, Received, due, latency_micros, message_text, report};
use crate::stats::{Latencies, cpu_secs, own_cpu_secs};
use crate::{BenchError, Report};

/// Longest line accepted from the server (IRC's limit is 512 bytes; some
/// servers send a little more with tags).
const MAX_LINE: u64 = 8192;
/// Limit for registering and joining.
const SETUP: Duration = Duration::from_secs(10);
/// Connections set up at once: ngircd's listen backlog is 10.
const SETUP_CONCURRENCY: usize = 4;
/// Longest text that fits a PRIVMSG line with its prefix within 512 bytes.
pub const MAX_IRC_SIZE: usize = 400;

type Writer = Arc<Mutex<OwnedWriteHalf>>;
type Reader = BufReader<OwnedReadHalf>;

/// One line, without CR LF; `None` at end of stream.
async fn read_line(reader: &mut Reader, buf: &mut Vec<u8>) -> Result<Option<String>, BenchError> {
    buf.clear();
    let n = (&mut *reader).take(MAX_LINE).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(BenchError::Irc("line too long or cut off".into()));
    }
    let line = String::from_utf8_lossy(buf);
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// The command (or numeric) of a line, after its optional prefix.
fn command(line: &str) -> &str {
    let rest = if line.starts_with(':') { line.split_once(' ').map_or("", |(_, r)| r) } else { line };
    rest.split(' ').next().unwrap_or("")
}

/// Answers a PING; returns whether the line was one.
async fn pong(line: &str, writer: &Writer) -> Result<bool, BenchError> {
    if let Some(arg) = line.strip_prefix("PING") {
        writer.lock().await.write_all(format!("PONG{arg}\r\n").as_bytes()).await?;
        return Ok(true);
    }
    Ok(false)
}

/// Registers as `nick` and joins `#room`.
async fn connect(addr: SocketAddr, nick: &str, room: &str) -> Result<(Reader, Writer), BenchError> {
    let stream = timeout(SETUP, TcpStream::connect(addr)).await.map_err(|_| BenchError::Timeout("connecting"))??;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let writer = Arc::new(Mutex::new(write));
    writer.lock().await.write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :cipherline-bench\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    let mut joined = false;
    timeout(SETUP, async {
        loop {
            let Some(line) = read_line(&mut reader, &mut buf).await? else {
                return Err(BenchError::Irc("the server closed the connection during setup".into()));
            };
            if pong(&line, &writer).await? {
                continue;
            }
            match command(&line) {
                // Welcome: registered; join the channel.
                "001" if !joined => {
                    joined = true;
                    writer.lock().await.write_all(format!("JOIN #{room}\r\n").as_bytes()).await?;
                }
                // End of NAMES: the join is complete.
                "366" => return Ok(()),
                "ERROR" | "432" | "433" | "437" | "471" | "473" | "474" | "475" => {
                    return Err(BenchError::Irc(format!("setup refused: {line}")));
                }
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| BenchError::Timeout("registering with the IRC server"))??;
    Ok((reader, writer))
}

/// Runs the fan-out benchmark against an IRC server.
pub async fn run(addr: SocketAddr, opts: &FanoutOptions, server_pid: Option<u32>) -> Result<Report, BenchError> {
    let epoch = Instant::now();
    let mut clients = Vec::with_capacity(opts.clients);
    let mut i = 0;
    while i < opts.clients {
        let batch: Vec<_> = (i..opts.clients.min(i + SETUP_CONCURRENCY))
            .map(|k| {
                let (nick, room) = (format!("{}{k}", opts.name_prefix), opts.room.clone());
                tokio::spawn(async move { connect(addr, &nick, &room).await })
            })
            .collect();
        i += batch.len();
        for task in batch {
            clients.push(task.await.map_err(|e| BenchError::Usage(format!("setup failed: {e}")))??);
        }
    }

    let per_client = (opts.messages * opts.clients.saturating_sub(1)) as u64;
    let (server_cpu0, own_cpu0) = (server_pid.and_then(cpu_secs), own_cpu_secs());
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + opts.timeout);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (i, (reader, writer)) in clients.into_iter().enumerate() {
        let target = format!("PRIVMSG #{} :", opts.room);
        readers.push(tokio::spawn(read_loop(reader, writer.clone(), target, epoch, per_client, deadline)));
        writers.push(tokio::spawn(write_loop(writer, opts.clone(), i, epoch, start, deadline)));
    }
    let mut results = Vec::new();
    for r in readers {
        results.push(r.await.map_err(|e| BenchError::Usage(format!("reader failed: {e}")))?);
    }
    let server_cpu = server_pid.and_then(cpu_secs).zip(server_cpu0).map(|(b, a)| b - a);
    let own_cpu = own_cpu_secs().zip(own_cpu0).map(|(b, a)| b - a);
    let mut writer_errors = Vec::new();
    for w in writers {
        match w.await {
            Ok((writer, error)) => {
                writer_errors.extend(error);
                let _ = timeout(Duration::from_secs(2), async {
                    let mut w = writer.lock().await;
                    let _ = w.write_all(b"QUIT :done\r\n").await;
                    let _ = w.shutdown().await;
                })
                .await;
            }
            Err(e) => writer_errors.push(e.to_string()),
        }
    }
    Ok(report("irc", opts, start, results, writer_errors, server_cpu, own_cpu))
}

async fn write_loop(
    writer: Writer,
    opts: FanoutOptions,
    index: usize,
    epoch: Instant,
    start: Instant,
    deadline: tokio::time::Instant,
) -> (Writer, Option<String>) {
    for k in 0..opts.messages {
        if let Some(at) = due(start, opts.rate, index, opts.clients, k) {
            sleep_until(at.into()).await;
        }
        if tokio::time::Instant::now() >= deadline {
            return (writer, Some("the deadline passed while sending".into()));
        }
        let line = format!("PRIVMSG #{} :{}\r\n", opts.room, message_text(epoch, opts.size));
        let sent = timeout_at(deadline, async { writer.lock().await.write_all(line.as_bytes()).await }).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return (writer, Some(format!("sending: {e}"))),
            Err(_) => return (writer, Some("the deadline passed while sending".into())),
        }
    }
    (writer, None)
}

async fn read_loop(
    mut reader: Reader,
    writer: Writer,
    target: String,
    epoch: Instant,
    expected: u64,
    deadline: tokio::time::Instant,
) -> Received {
    let mut got =
        Received { latencies: Latencies::with_capacity(usize::try_from(expected).unwrap_or(0)), ..Received::default() };
    let mut buf = Vec::with_capacity(512);
    while got.count < expected {
        let line = match timeout_at(deadline, read_line(&mut reader, &mut buf)).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                got.error = Some("the IRC server closed the connection".into());
                break;
            }
            Ok(Err(e)) => {
                got.error = Some(e.to_string());
                break;
            }
            Err(_) => break,
        };
        if let Some((_, text)) = line.split_once(target.as_str()) {
            if let Some(us) = latency_micros(epoch, text) {
                got.latencies.push_micros(us);
            }
            got.count += 1;
            got.last = Some(Instant::now());
        } else if command(&line) == "ERROR" {
            got.error = Some(format!("server: {line}"));
            break;
        } else if let Err(e) = pong(&line, &writer).await {
            got.error = Some(e.to_string());
            break;
        }
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_with_and_without_prefix() {
        assert_eq!(command(":irc.example 001 b0 :Welcome"), "001");
        assert_eq!(command("PING :irc.example"), "PING");
        assert_eq!(command(":b1!~b1@localhost PRIVMSG #bench :hi"), "PRIVMSG");
    }
}
