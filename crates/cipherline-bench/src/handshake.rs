//! `handshake`: full handshakes (connect, handshake, close_notify), no
//! application data, from `concurrency` connections at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cipherline_proto::{ClientConfig, Suite};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::stats::{Latencies, cpu_secs, own_cpu_secs};
use crate::{BenchError, Report, Target, round3};

/// Limit for each step of one handshake.
const STEP: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct HandshakeOptions {
    /// The one suite the client offers.
    pub suite: Suite,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// How long to keep starting handshakes.
    pub duration: Duration,
    /// Stop after this many handshakes even if time is left.
    pub max_handshakes: u64,
}

/// Parses a suite: its code point (`0x0121`, `0121`) or its name as
/// cipherline prints it (`RSA-OAEP-SHA256+X25519MLKEM768+AES-256-GCM`).
pub fn parse_suite(s: &str) -> Result<Suite, String> {
    let hex = s.trim_start_matches("0x").trim_start_matches("0X");
    if let Ok(code) = u16::from_str_radix(hex, 16)
        && let Some(suite) = Suite::from_u16(code)
    {
        return Ok(suite);
    }
    Suite::FORWARD_SECRET
        .into_iter()
        .chain([Suite::SEED_FAITHFUL])
        .find(|suite| suite.to_string().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("unknown suite {s:?}: give a code point such as 0x0121 (PROTOCOL.md §5.1)"))
}

/// One full handshake; returns how long it took (TCP connect included).
async fn one(target: &Target, config: &Arc<ClientConfig>) -> Result<Duration, BenchError> {
    let t0 = Instant::now();
    let stream =
        timeout(STEP, TcpStream::connect(target.addr)).await.map_err(|_| BenchError::Timeout("connecting"))??;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let pending = cipherline_net::connect(read, write, config.clone(), STEP).await?;
    let verdict = match pending.server_key() {
        Some(key) => target.trust.check(key),
        None => Err("the server presented no key (password-only servers are not supported)".to_owned()),
    };
    if let Err(why) = verdict {
        pending.refuse().await;
        return Err(BenchError::Untrusted(why));
    }
    let mut chan = pending.trust(STEP).await?;
    let took = t0.elapsed();
    // close_notify instead of a Hello: the server drops the connection
    // without registering a name.
    let _ = timeout(STEP, chan.close()).await;
    Ok(took)
}

struct WorkerResult {
    latencies: Latencies,
    errors: u64,
    first_error: Option<String>,
}

/// Runs the handshake benchmark.
pub async fn run(target: Arc<Target>, opts: &HandshakeOptions, server_pid: Option<u32>) -> Result<Report, BenchError> {
    let config = Arc::new(ClientConfig {
        suites: vec![opts.suite],
        dangerous_allow_no_forward_secrecy: opts.suite == Suite::SEED_FAITHFUL,
        ..ClientConfig::default()
    });
    // One handshake before the clock starts: the trust decision (and the
    // suite's availability) fails fast here instead of as N errors.
    one(&target, &config).await?;

    let claimed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + opts.duration;
    let (server_cpu0, own_cpu0) = (server_pid.and_then(cpu_secs), own_cpu_secs());
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (target, config, claimed) = (target.clone(), config.clone(), claimed.clone());
        let max = opts.max_handshakes;
        workers.push(tokio::spawn(async move {
            let mut result = WorkerResult { latencies: Latencies::default(), errors: 0, first_error: None };
            while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < max {
                match one(&target, &config).await {
                    Ok(took) => result.latencies.push(took),
                    Err(e) => {
                        result.errors += 1;
                        let fatal = matches!(e, BenchError::Untrusted(_));
                        result.first_error.get_or_insert_with(|| e.to_string());
                        if fatal {
                            break;
                        }
                        // Do not spin on a refusing server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            result
        }));
    }
    let mut latencies = Latencies::default();
    let (mut errors, mut first_error) = (0, None);
    for w in workers {
        let r = w.await.map_err(|e| BenchError::Usage(format!("worker failed: {e}")))?;
        latencies.merge(r.latencies);
        errors += r.errors;
        first_error = first_error.or(r.first_error);
    }
    let secs = start.elapsed().as_secs_f64();
    let server_cpu = server_pid.and_then(cpu_secs).zip(server_cpu0).map(|(b, a)| b - a);
    let own_cpu = own_cpu_secs().zip(own_cpu0).map(|(b, a)| b - a);
    let count = latencies.len();
    let (p50, p99, max) = latencies.summary_ms();

    let mut report = Report::new();
    report
        .set("mode", "handshake")
        .set("suite", opts.suite.to_string())
        .set("suite_code", format!("0x{:04x}", opts.suite.to_u16()))
        .set("handshakes_per_sec", round3(count as f64 / secs))
        .set("p50_ms", p50)
        .set("p99_ms", p99)
        .set("max_ms", max)
        .set("handshakes", count)
        .set("errors", errors)
        .set("concurrency", opts.concurrency)
        .set("secs", round3(secs))
        .set("generator_cpu_secs", own_cpu.map(round3));
    if let Some(cpu) = server_cpu {
        report.set("server_cpu_secs", round3(cpu));
        if cpu > 0.0 {
            report.set("handshakes_per_server_cpu_sec", round3(count as f64 / cpu));
        }
    }
    if let Some(e) = first_error {
        report.set("first_error", e);
    }
    report.ok = errors == 0 && count > 0;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_by_code_or_name() {
        assert_eq!(parse_suite("0x0121").unwrap().to_u16(), 0x0121);
        assert_eq!(parse_suite("0221").unwrap().to_u16(), 0x0221);
        assert_eq!(parse_suite("rsa-oaep-sha256+x25519+aes-256-gcm").unwrap().to_u16(), 0x0111);
        assert!(parse_suite("0x0201").is_err());
        assert!(parse_suite("fast").is_err());
    }
}
