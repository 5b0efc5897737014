//! [`NatsStore`]: the [`Store`](crate::Store) on NATS JetStream, so that
//! several relay nodes can share one replicated store.
//!
//! # What maps to what
//!
//! - **Queues** live in one stream (`<prefix>_QUEUES`, subjects
//!   `<subject>.q.>`), one subject per queue: `<subject>.q.h<hex of the
//!   name>`. Each message carries its queue sequence number (`Cl-Seq`), its
//!   `now_ms` (`Cl-Ms`) and the running total of payload bytes ever appended
//!   to its queue including itself (`Cl-Cum`) in headers. An append reads the
//!   subject's last record and publishes the next number with
//!   `Nats-Expected-Last-Subject-Sequence` set to that record's stream
//!   sequence: the server refuses it if anything was appended in between
//!   (then the append reads again and retries), so numbers are dense,
//!   strictly increasing and never reused, across nodes.
//! - **Deletion** (`ack`, `expire`) always removes a prefix of a queue: a
//!   purge of the subject below a stream sequence. The last record of a
//!   subject is never purged on its own: when a queue is emptied, a
//!   *marker* record (`Cl-Mark`, same number and total as the last message)
//!   is published first (conditional on the last message still being last)
//!   and everything below it purged, so the next append still continues
//!   from the right number. Markers are never returned by reads.
//! - **Counts** come from the first and last records of a subject: with
//!   dense numbers and prefix-only deletion, a queue holds the messages
//!   numbered from its first to its last, and their bytes are the
//!   difference of the running totals. Two reads, no scan.
//! - **Key-value** lives in a second stream (`<prefix>_KV`, subjects
//!   `<subject>.k.>`, one message kept per subject): a key is the subject
//!   `<subject>.k.h<hex of segment 1>.h<hex of segment 2>…` (one token per
//!   `/`-separated segment, so a prefix ending in `/` lists only its own
//!   subjects), its revision is the stream sequence of
//!   its message (strictly increasing across the map, never reused, like
//!   SQLite's counter). `cas` is a publish with
//!   `Nats-Expected-Last-Subject-Sequence` (0: the key must not exist);
//!   `delete` purges the subject (no tombstone left behind). `delete_if`
//!   publishes a *tombstone* (`Cl-Tomb`, empty) with
//!   `Nats-Expected-Last-Subject-Sequence` set to the expected revision, so
//!   it replaces exactly that value or nothing, then purges the subject
//!   below the tombstone's successor (a value written after it stays).
//!   A tombstone reads as an absent key, and `cas(None)` writes over one,
//!   so a crash between the two steps leaves nothing visible but the key
//!   in `keys` until it is written or deleted again.
//!
//! - **Blobs** (module `blobs`): a third stream (`<prefix>_BLOBS`,
//!   subjects `<subject>.b.>`), one subject per blob, one message per
//!   piece; records and counts in the key-value map (see that module).
//!
//! # What the contract gives here (and where it differs from SQLite)
//!
//! - **Durable** means what JetStream's publish acknowledgement means: the
//!   stream leader stored it (and, with replicas, a quorum did). It survives
//!   a crash of the relay and of a `nats-server` process. A machine crash
//!   can lose what the server had not yet synced to disk (its
//!   `sync_interval`, two minutes by default) unless the stream has
//!   replicas on other machines.
//! - **`append_each` is not atomic**: it appends to its queues concurrently
//!   (32 at a time); a failure or crash part way leaves some appended. Quota checks
//!   read counts first, so concurrent appenders on several nodes can take a
//!   queue a little past its quota.
//! - **`expire`** walks the queue stream in append order (at most
//!   [`NatsOptions::max_expire_scan`] records per call) and removes only
//!   prefixes of queues: a message is expired once every earlier message of
//!   its queue is; the walk ends at the first record appended more than a
//!   minute after the cutoff. With one clock that is exactly SQLite's set;
//!   with clocks that disagree between nodes (by more than that minute) a
//!   message may wait for an earlier one.
//! - **`total_stats`** lists every queue subject and counts each: its cost
//!   grows with the number of queues. `append_each` with a finite store
//!   quota first asks for the stream's stored bytes (payloads plus
//!   overhead: an upper bound) and counts exactly only when that bound
//!   says the quota might be reached.
//! - **`keys`** lists every key subject under the prefix's complete
//!   `/`-segments and sorts: its cost grows with the number of keys there
//!   (all keys for a prefix without `/`).
//! - A crash between publishing a marker and the purge after it leaves the
//!   acknowledged messages readable until the next `ack` of that queue
//!   (delivered again, never lost).

mod blobs;
mod kv;
mod queues;

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};

use crate::{Result, StoreError};

/// Header: a record's queue sequence number.
const SEQ_HEADER: &str = "Cl-Seq";
/// Header: the `now_ms` given to `append`.
const MS_HEADER: &str = "Cl-Ms";
/// Header: payload bytes ever appended to the queue, this message included.
const CUM_HEADER: &str = "Cl-Cum";
/// Header: present on markers (records that only keep a queue's numbers).
const MARK_HEADER: &str = "Cl-Mark";
/// Header: present on tombstones (a key deleted by `delete_if`, about to be
/// purged).
const TOMB_HEADER: &str = "Cl-Tomb";

/// The bounds and names of a [`NatsStore`].
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Largest payload `append` accepts, in bytes (the NATS server's
    /// `max_payload` must leave room for it plus 1 KiB of headers).
    pub max_payload_bytes: usize,
    /// Largest value `put` and `cas` accept, in bytes.
    pub max_value_bytes: usize,
    /// Longest queue name or key, in bytes (subjects carry them in hex: keep
    /// it at most 1 KiB, under NATS's 4 KiB control line).
    pub max_name_bytes: usize,
    /// Most messages one `read` returns.
    pub max_read: usize,
    /// Most records one `expire` call looks at.
    pub max_expire_scan: usize,
    /// How long any one request to the NATS server may take.
    pub timeout: Duration,
    /// Prefix of the stream names (`<prefix>_QUEUES`, `<prefix>_KV`,
    /// `<prefix>_BLOBS`).
    pub stream_prefix: String,
    /// First token of every subject (`<subject>.q.…`, `<subject>.k.…`,
    /// `<subject>.b.…`).
    pub subject_prefix: String,
    /// Replicas of each stream. `None` (the default): min(3, cluster
    /// size), the cluster size being the larger of the number of server
    /// addresses given to [`NatsStore::connect`] and the number of client
    /// URLs the server announces for its cluster (`connect_urls` in its
    /// INFO); when JetStream answers that it cannot place that many, fewer
    /// (down to 1, with a warning). `Some(n)`: exactly `n` (1 to 5), or an
    /// error. A stream that exists with another count is updated to this
    /// one (kept, with a warning, when the servers refuse the update).
    pub replicas: Option<usize>,
}

/// How to reach the NATS servers: credentials and TLS (all optional).
/// Paths are read when connecting; a missing or bad file is an error then.
#[derive(Debug, Clone, Default)]
pub struct NatsConnection {
    /// A NATS credentials file (`.creds`: user JWT and NKey seed).
    pub creds: Option<std::path::PathBuf>,
    /// PEM file of the CA that signed the NATS servers' certificates
    /// (without it, the system's roots).
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate, for servers that verify clients (needs
    /// [`NatsConnection::tls_key`]).
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of [`NatsConnection::tls_cert`].
    pub tls_key: Option<std::path::PathBuf>,
    /// Refuse to talk to a server without TLS.
    pub tls_required: bool,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1024 * 1024,
            max_value_bytes: 1024 * 1024,
            max_name_bytes: 1024,
            max_read: 1000,
            max_expire_scan: 10_000,
            timeout: Duration::from_secs(10),
            stream_prefix: "CIPHERLINE".to_owned(),
            subject_prefix: "cipherline".to_owned(),
            replicas: None,
        }
    }
}

/// Room for our headers (and the server's own) on top of a payload or value.
const HEADER_ROOM: usize = 1024;

/// The [`Store`](crate::Store) on NATS JetStream (see the module doc).
pub struct NatsStore {
    client: async_nats::Client,
    queues: stream::Stream,
    kv: stream::Stream,
    blobs: stream::Stream,
    context: jetstream::Context,
    options: NatsOptions,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore").field("options", &self.options).finish_non_exhaustive()
    }
}

impl NatsStore {
    /// Connects to the NATS servers at `servers` (`nats://host:port`,
    /// several separated by commas) and opens the store on them.
    pub async fn connect(servers: &str, options: NatsOptions) -> Result<Self> {
        Self::connect_with(servers, &NatsConnection::default(), options).await
    }

    /// [`NatsStore::connect`] with credentials and TLS options.
    pub async fn connect_with(servers: &str, connection: &NatsConnection, options: NatsOptions) -> Result<Self> {
        let addrs = parse_servers(servers)?;
        let given = addrs.len();
        let mut connect = async_nats::ConnectOptions::new()
            .name("cipherline")
            .connection_timeout(options.timeout)
            .request_timeout(Some(options.timeout))
            .require_tls(connection.tls_required);
        if let Some(path) = &connection.creds {
            connect = connect.credentials_file(path).await.map_err(|e| {
                StoreError::Nats(format!("cannot use the NATS credentials file {}: {e}", path.display()))
            })?;
        }
        if let Some(path) = &connection.tls_ca {
            check_readable("TLS CA file", path)?;
            connect = connect.add_root_certificates(path.clone()).require_tls(true);
        }
        match (&connection.tls_cert, &connection.tls_key) {
            (Some(cert), Some(key)) => {
                check_readable("TLS client certificate", cert)?;
                check_readable("TLS client key", key)?;
                connect = connect.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Nats(
                    "a TLS client certificate and its key go together: give both or neither".to_owned(),
                ));
            }
        }
        let client = bounded(options.timeout, "connect", connect.connect(addrs)).await?;
        Self::open_sized(client, options, given).await
    }

    /// Opens the store on a connected client (credentials and TLS are the
    /// client's business): creates its three streams if they do not exist and
    /// checks that they are usable.
    pub async fn open(client: async_nats::Client, options: NatsOptions) -> Result<Self> {
        Self::open_sized(client, options, 1).await
    }

    /// [`NatsStore::open`], `given` server addresses having been named.
    async fn open_sized(client: async_nats::Client, mut options: NatsOptions, given: usize) -> Result<Self> {
        let server_max = client.server_info().max_payload;
        let needed = options.max_payload_bytes.max(options.max_value_bytes).saturating_add(HEADER_ROOM);
        if server_max < needed {
            return Err(StoreError::Nats(format!(
                "the NATS server's max_payload is {server_max} bytes; this store needs at least {needed} \
                 (raise max_payload in the server's configuration or lower the store's payload limit)"
            )));
        }
        check_token("stream prefix", &options.stream_prefix)?;
        check_token("subject prefix", &options.subject_prefix)?;
        let mut context = jetstream::new(client.clone());
        context.set_timeout(options.timeout);
        // Asked for explicitly: that count or nothing. Derived: the count,
        // else fewer when the servers say they cannot place that many (a
        // server announcing several addresses, a member down at the very
        // first start); a later start moves the streams up again.
        let counts: Vec<usize> = match options.replicas {
            Some(n) if (1..=5).contains(&n) => vec![n],
            Some(n) => return Err(StoreError::Nats(format!("{n} replicas: JetStream allows 1 to 5"))),
            None => (1..=auto_replicas(given, &client.server_info().connect_urls)).rev().collect(),
        };
        let mut failed = None;
        for replicas in counts {
            match open_streams(&context, &options, replicas).await {
                Ok((queues, kv, blobs)) => {
                    tracing::info!(
                        queues = %queues.cached_info().config.name,
                        kv = %kv.cached_info().config.name,
                        replicas,
                        "NATS store opened"
                    );
                    options.replicas = Some(replicas);
                    return Ok(Self { client, queues, kv, blobs, context, options });
                }
                Err(e) if options.replicas.is_none() && cannot_place(&e) => {
                    tracing::warn!(replicas, error = %e, "JetStream cannot place this many replicas; trying fewer");
                    failed = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(failed.unwrap_or_else(|| StoreError::Nats("no replica count to try".to_owned())))
    }

    /// The bounds this store enforces.
    pub fn options(&self) -> &NatsOptions {
        &self.options
    }

    /// The NATS connection, for other traffic between relay nodes (NATS
    /// core subjects under the same prefix; docs/cluster.md).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Flushes what this client has sent and closes the connection.
    pub async fn close(self) {
        let _ = tokio::time::timeout(self.options.timeout, self.client.flush()).await;
        drop(self);
    }

    fn check_len(&self, what: &'static str, len: usize, max: usize) -> Result<()> {
        if len > max {
            return Err(StoreError::TooLarge { what, len, max });
        }
        Ok(())
    }

    fn check_name(&self, what: &'static str, name: &str) -> Result<()> {
        self.check_len(what, name.len(), self.options.max_name_bytes)
    }

    /// The subject of queue `name`.
    fn queue_subject(&self, name: &str) -> String {
        format!("{}.q.{}", self.options.subject_prefix, encode(name))
    }

    /// The subject of key `key`: one token per `/`-separated segment, so
    /// that listing a prefix that ends in `/` (`room/`, `e2e/kp/alice/`)
    /// asks the server for those subjects only.
    fn key_subject(&self, key: &str) -> String {
        format!("{}.k.{}", self.options.subject_prefix, encode_segments(key))
    }

    /// The subjects to list for keys starting with `prefix`: those under
    /// its complete segments (the rest of the prefix is checked here).
    fn key_filter(&self, prefix: &str) -> String {
        match prefix.rsplit_once('/') {
            Some((dirs, _)) => format!("{}.k.{}.>", self.options.subject_prefix, encode_segments(dirs)),
            None => format!("{}.k.>", self.options.subject_prefix),
        }
    }

    /// The key of a key subject (as [`NatsStore::key_subject`] wrote it).
    fn subject_key(&self, subject: &str) -> Option<String> {
        let tokens = subject.strip_prefix(&self.options.subject_prefix)?.strip_prefix(".k.")?;
        let segments: Option<Vec<String>> = tokens.split('.').map(decode).collect();
        Some(segments?.join("/"))
    }
}

impl crate::Store for NatsStore {
    async fn append(&self, queue: &str, payload: Vec<u8>, now_ms: u64) -> Result<u64> {
        self.queue_append(queue, payload, now_ms).await
    }

    async fn read(&self, queue: &str, after_seq: u64, max: usize) -> Result<Vec<crate::StoredMessage>> {
        self.queue_read(queue, after_seq, max).await
    }

    async fn ack(&self, queue: &str, upto_seq: u64) -> Result<u64> {
        self.queue_ack(queue, upto_seq).await
    }

    async fn expire(&self, before_ms: u64, max: usize) -> Result<Vec<crate::ExpiredMessage>> {
        self.queue_expire(before_ms, max).await
    }

    async fn append_each(
        &self,
        queues: Vec<String>,
        payload: Vec<u8>,
        now_ms: u64,
        quota: crate::Quota,
    ) -> Result<Vec<crate::Appended>> {
        self.queue_append_each(queues, payload, now_ms, quota).await
    }

    async fn queue_stats(&self, queue: &str) -> Result<crate::QueueStats> {
        self.queue_stats_of(queue).await
    }

    async fn total_stats(&self) -> Result<crate::QueueStats> {
        self.queue_total_stats().await
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>> {
        self.kv_get(key).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64> {
        self.kv_put(key, value).await
    }

    async fn cas(&self, key: &str, expected: Option<u64>, value: Vec<u8>) -> Result<u64> {
        self.kv_cas(key, expected, value).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.kv_delete(key).await
    }

    async fn delete_if(&self, key: &str, revision: u64) -> Result<bool> {
        self.kv_delete_if(key, revision).await
    }

    async fn keys(&self, prefix: &str, after: &str, max: usize) -> Result<Vec<String>> {
        self.kv_keys(prefix, after, max).await
    }
}

impl crate::BlobStore for NatsStore {
    async fn blob_create(&self, blob: crate::NewBlob, quota: crate::BlobQuota) -> Result<crate::BlobCreated> {
        self.nats_blob_create(blob, quota).await
    }

    async fn blob_get(&self, id: crate::BlobId) -> Result<Option<crate::BlobRecord>> {
        self.nats_blob_get(id).await
    }

    async fn blob_append(&self, id: crate::BlobId, owner: &str, offset: u64, data: &[u8]) -> Result<crate::BlobWrite> {
        self.nats_blob_append(id, owner, offset, data).await
    }

    async fn blob_finish(&self, id: crate::BlobId) -> Result<crate::BlobFinished> {
        self.nats_blob_finish(id).await
    }

    async fn blob_read(&self, id: crate::BlobId, offset: u64, max: usize) -> Result<Option<crate::BlobRead>> {
        self.nats_blob_read(id, offset, max).await
    }

    async fn blob_member_done(&self, id: crate::BlobId, member: &str) -> Result<crate::MemberDone> {
        self.nats_blob_member_done(id, member).await
    }

    async fn blob_delete(&self, id: crate::BlobId) -> Result<Option<crate::BlobRecord>> {
        self.nats_blob_delete(id).await
    }

    async fn blob_expire(&self, before_ms: u64, max: usize) -> Result<Vec<crate::BlobRecord>> {
        self.nats_blob_expire(before_ms, max).await
    }

    async fn blob_usage(&self, owner: &str) -> Result<(crate::BlobUsage, crate::BlobUsage)> {
        self.nats_blob_usage(owner).await
    }
}

/// Creates (or opens, moving to `replicas`) the store's three streams.
async fn open_streams(
    context: &jetstream::Context,
    options: &NatsOptions,
    replicas: usize,
) -> Result<(stream::Stream, stream::Stream, stream::Stream)> {
    let config = |kind: &str, letter: char, per_subject: i64| stream::Config {
        name: format!("{}_{kind}", options.stream_prefix),
        subjects: vec![format!("{}.{letter}.>", options.subject_prefix)],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        max_messages_per_subject: per_subject,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    let queues = open_stream(context, config("QUEUES", 'q', -1), options.timeout).await?;
    let kv = open_stream(context, config("KV", 'k', 1), options.timeout).await?;
    let blobs = open_stream(context, config("BLOBS", 'b', -1), options.timeout).await?;
    Ok((queues, kv, blobs))
}

/// JetStream's answers when it cannot place a stream's replicas: not
/// clustered (10074), or not enough servers (10023, "insufficient
/// resources").
fn cannot_place(e: &StoreError) -> bool {
    let text = e.to_string();
    ["10074", "10023", "insufficient resources", "replicas > 1 not supported"].iter().any(|t| text.contains(t))
}

async fn open_stream(
    context: &jetstream::Context,
    config: stream::Config,
    timeout: Duration,
) -> Result<stream::Stream> {
    let name = config.name.clone();
    let per_subject = config.max_messages_per_subject;
    let subjects = config.subjects.clone();
    let replicas = config.num_replicas;
    let mut stream = bounded(timeout, "open stream", context.get_or_create_stream(config)).await?;
    let found = stream.cached_info().config.clone();
    // A stream of that name made by something else would take our subjects
    // differently (or keep several values per key): refuse it.
    if found.subjects != subjects || found.max_messages_per_subject != per_subject {
        return Err(StoreError::Nats(format!(
            "stream {name} exists with subjects {:?} and {} messages per subject, not {subjects:?} and {per_subject}",
            found.subjects, found.max_messages_per_subject
        )));
    }
    // A stream made when the cluster was smaller (or with another setting)
    // is moved to the count asked for now: JetStream adds or removes peers
    // and copies the data. If the servers refuse (not enough of them up),
    // the stream keeps working with the replicas it has.
    if found.num_replicas != replicas {
        let wanted = stream::Config { num_replicas: replicas, ..found.clone() };
        match bounded(timeout, "update stream replicas", context.update_stream(wanted)).await {
            Ok(_) => {
                stream = settled(context, &name, replicas, timeout).await?;
                tracing::info!(stream = %name, from = found.num_replicas, to = replicas, "stream replicas changed");
            }
            Err(e) => {
                tracing::warn!(stream = %name, has = found.num_replicas, wanted = replicas, error = %e, "stream replicas kept")
            }
        }
    }
    Ok(stream)
}

/// The stream `name` once its replica group has a leader and all
/// `replicas` members caught up (JetStream elects a new group after a
/// replica change; until then every request to the stream times out), or
/// as it is after `timeout` (then requests may fail for a while; the
/// server's callers retry or report `StoreFailed`).
async fn settled(
    context: &jetstream::Context,
    name: &str,
    replicas: usize,
    timeout: Duration,
) -> Result<stream::Stream> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let stream = bounded(timeout, "open stream", context.get_stream(name)).await?;
        let ready = stream.cached_info().cluster.as_ref().is_some_and(|c| {
            c.leader.is_some() && c.replicas.len() + 1 >= replicas && c.replicas.iter().all(|p| p.current)
        });
        if ready || tokio::time::Instant::now() >= deadline {
            if !ready {
                tracing::warn!(stream = %name, replicas, "stream replicas not settled yet");
            }
            return Ok(stream);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// min(3, cluster size): the cluster size is the larger of the number of
/// addresses given and the number of distinct client URLs the server
/// announced for its cluster (empty on a lone server; routes still
/// forming at start can make it short, hence the given count too).
fn auto_replicas(given: usize, connect_urls: &[String]) -> usize {
    let announced = connect_urls.iter().collect::<std::collections::BTreeSet<_>>().len();
    given.max(announced).clamp(1, 3)
}

/// A file named in the connection options must be readable now, so that a
/// typo is reported at start, naming the option.
fn check_readable(what: &str, path: &std::path::Path) -> Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| StoreError::Nats(format!("cannot read the NATS {what} {}: {e}", path.display())))
}

/// Waits for `future` at most `timeout`; maps its error to the store's.
async fn bounded<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    future: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(StoreError::Nats(format!("{what}: {e}"))),
        Err(_) => Err(StoreError::Nats(format!("{what}: no answer within {timeout:?}"))),
    }
}

/// `nats://a:4222,nats://b:4222` (or bare `host:port`) into addresses.
fn parse_servers(servers: &str) -> Result<Vec<async_nats::ServerAddr>> {
    let mut addrs = Vec::new();
    for part in servers.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let addr = part
            .parse::<async_nats::ServerAddr>()
            .map_err(|e| StoreError::Nats(format!("bad NATS server address {part:?}: {e}")))?;
        addrs.push(addr);
    }
    if addrs.is_empty() {
        return Err(StoreError::Nats("no NATS server address given".to_owned()));
    }
    Ok(addrs)
}

/// A prefix must be one plain subject token (and a valid stream name).
fn check_token(what: &str, token: &str) -> Result<()> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(StoreError::Nats(format!("{what} {token:?} must be letters, digits, '_' or '-'")));
    }
    Ok(())
}

/// A name as one subject token: `h` and its bytes in lowercase hex. Any
/// string works (NATS tokens cannot hold `.`, `*`, `>`, spaces, or be
/// empty), and hex keeps byte order.
fn encode(name: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(1 + 2 * name.len());
    out.push('h');
    for b in name.bytes() {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `a/b/c` as the tokens `h61.h62.h63`.
fn encode_segments(key: &str) -> String {
    key.split('/').map(encode).collect::<Vec<_>>().join(".")
}

/// The name in a subject's last token (as [`encode`] wrote it); `None` if it
/// is not one of ours.
fn decode(token: &str) -> Option<String> {
    let hex = token.strip_prefix('h')?.as_bytes();
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut bytes = Vec::with_capacity(hex.len() / 2);
    for pair in hex.chunks_exact(2) {
        let [hi, lo] = pair else { return None };
        bytes.push((digit(*hi)? << 4) | digit(*lo)?);
    }
    String::from_utf8(bytes).ok()
}

/// A number header of a stored record, strictly parsed.
fn header_u64(headers: &HeaderMap, name: &str) -> Result<u64> {
    let value =
        headers.get(name).ok_or_else(|| StoreError::Nats(format!("stored record without its {name} header")))?;
    let text = value.as_str();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StoreError::Nats(format!("stored record with a malformed {name} header")));
    }
    text.parse().map_err(|_| StoreError::Nats(format!("stored record with a malformed {name} header")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip_through_subject_tokens_in_byte_order() {
        for name in ["", "a", "room/x.y *>", "é\u{10FFFF}"] {
            let token = encode(name);
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
            assert_eq!(decode(&token).as_deref(), Some(name));
        }
        assert!(encode("a") < encode("b") && encode("ab") < encode("b"));
        assert_eq!(decode("x00"), None);
        assert_eq!(decode("h0"), None);
        assert_eq!(decode("hzz"), None);
        assert_eq!(decode("hff"), None, "not UTF-8");
    }

    #[test]
    fn replicas_are_three_at_most_and_follow_the_larger_cluster_view() {
        let urls = |n: usize| (0..n).map(|i| format!("127.0.0.1:{}", 4000 + i)).collect::<Vec<_>>();
        assert_eq!(auto_replicas(1, &[]), 1);
        assert_eq!(auto_replicas(0, &[]), 1);
        assert_eq!(auto_replicas(1, &urls(2)), 2);
        assert_eq!(auto_replicas(3, &[]), 3);
        assert_eq!(auto_replicas(1, &urls(5)), 3);
        // The same URL announced twice is one server.
        assert_eq!(auto_replicas(1, &[urls(1).concat(), urls(1).concat()]), 1);
    }

    #[test]
    fn server_lists_parse_and_an_empty_one_is_refused() {
        assert_eq!(parse_servers("nats://127.0.0.1:4222, nats://127.0.0.1:4223").unwrap().len(), 2);
        assert!(parse_servers(" , ").is_err());
    }
}
