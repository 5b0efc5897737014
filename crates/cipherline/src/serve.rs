//! `cipherline serve`: run the relay server.
//!
//! Zero configuration: listens on 127.0.0.1:5555 and, on first start,
//! creates an RSA-3072 server key in the data directory; later starts reuse
//! it, so the fingerprint people pin stays the same. A TOML file can set
//! everything the flags set, and the limits; flags override the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cipherline_keys::{DataDir, KeyKind, LoadOptions, PrivateKey, load_server_key, write_key_pair};
use cipherline_proto::message::ClientAuthRequest;
use cipherline_server::{Identities, IdentityPolicy, Limits, RunOptions, Settings};
use clap::Args;
use serde::Deserialize;

use crate::error::CliError;
use crate::passphrase::PassphraseArgs;
use crate::password::PasswordArgs;
use crate::trust::DataDirArgs;

/// The address served when neither a flag nor the file names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5555";
/// The server key's file name inside the data directory.
pub const DEFAULT_KEY_FILE: &str = "server_key.pem";

/// Run the relay server: clients connect, chat in rooms and send direct
/// messages. Stops gracefully on Ctrl-C or SIGTERM. Logs go to stderr
/// (RUST_LOG=debug for more).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:5555 or [::]:5555 to serve a
    /// network. Default: 127.0.0.1:5555 (this machine only).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    #[command(flatten)]
    pub data_dir: DataDirArgs,

    /// The server's key: an RSA (2048 to 4096 bits) or X25519 private key
    /// in PEM, such as a seed's server_private_key.pem. Default:
    /// server_key.pem in the data directory, created (RSA-3072) on first
    /// start.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,

    /// A TOML configuration file (keys: listen, data_dir, key, store, and
    /// the [limits], [identity] and [nats] tables); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub passphrase: PassphraseArgs,

    /// Use the key even if group or others can read its file.
    #[arg(long)]
    pub insecure_key_permissions: bool,

    /// Password mode: every client must know this shared password (seed
    /// 002's Alice and Bob). Combined with the server key unless
    /// --password-only is given.
    #[command(flatten)]
    pub password: PasswordArgs,

    /// With a password, use no server key at all: the password alone
    /// authenticates the server to clients (and clients to it).
    #[arg(long)]
    pub password_only: bool,

    /// Admit only the identity keys listed in FILE, each under its names
    /// (lines "NAME SHA256:<fingerprint>"); re-read on SIGHUP. Without it
    /// the server is open: a name belongs to the first identity key that
    /// uses it (recorded in the data directory's `names` file).
    #[arg(long, value_name = "FILE")]
    pub authorized_keys: Option<PathBuf>,

    /// Keep queued messages and the server's key-value data in NATS
    /// JetStream instead of the data directory, so that several relay
    /// nodes can share them: nats://HOST:PORT, several separated by commas
    /// (one cluster). The NATS server needs JetStream and max_payload of at
    /// least 2MB; files (blobs) stay in the data directory.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,

    /// With a NATS store: the NATS credentials file (.creds, a user JWT
    /// and NKey seed) to connect with. Config file: nats.creds.
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,

    /// With a NATS store: PEM file of the CA that signed the NATS servers'
    /// certificates (implies TLS). Config file: nats.tls_ca.
    #[arg(long, value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,

    /// With a NATS store: PEM client certificate for servers that verify
    /// clients (with --nats-tls-key; implies TLS). Config file:
    /// nats.tls_cert.
    #[arg(long, value_name = "FILE", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,

    /// With a NATS store: the PEM private key of --nats-tls-cert. Config
    /// file: nats.tls_key.
    #[arg(long, value_name = "FILE", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,

    /// With a NATS store: refuse NATS servers that do not offer TLS.
    /// Config file: nats.tls_required = true.
    #[arg(long)]
    pub nats_tls_required: bool,

    /// Check the configuration and exit, without listening or creating
    /// anything: the config file (TOML keys and [limits]), the listen
    /// address, the server key (loaded if it exists) and the identity
    /// policy (its authorized-keys file parsed). Prints "config OK" and
    /// exits 0, or says what is wrong and exits 2.
    #[arg(long)]
    pub check_config: bool,
}

/// The `[identity]` table of the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityConfig {
    /// "open" (the default) or "allowlist".
    policy: Option<String>,
    /// The authorized-keys file for the allowlist policy.
    authorized_keys: Option<PathBuf>,
}

/// The `[nats]` table of the configuration file: how to reach the NATS
/// servers of `store` (the flags of the same names override it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NatsConfig {
    creds: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    tls_required: bool,
    /// Replicas of the JetStream streams; default min(3, cluster size).
    replicas: Option<usize>,
}

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    key: Option<PathBuf>,
    /// Same as `--store`.
    store: Option<String>,
    #[serde(default)]
    nats: NatsConfig,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    identity: IdentityConfig,
}

/// A bad configuration file is reported like bad flags (exit code 2): the
/// operator has to change what the server was given, not retry.
fn config_error(what: impl Into<String>, hint: impl Into<String>) -> CliError {
    CliError::usage(what, hint)
}

fn read_config(path: &Path) -> Result<FileConfig, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        config_error(format!("cannot read config file {}: {e}", path.display()), "check the path given to --config")
    })?;
    toml::from_str(&text).map_err(|e| {
        config_error(
            format!("config file {}: {}", path.display(), e.message()),
            "see `cipherline serve --help` and PROTOCOL.md §13.5 for the keys",
        )
    })
}

/// The configuration file (or the defaults), with its limits checked.
fn load_config(args: &ServeArgs) -> Result<FileConfig, CliError> {
    let file = match &args.config {
        Some(path) => read_config(path)?,
        None => FileConfig::default(),
    };
    file.limits.validate().map_err(|e| config_error(format!("config: {e}"), "fix the [limits] table"))?;
    Ok(file)
}

/// The data directory: the flag (or CIPHERLINE_HOME, or the per-user
/// default), unless only the file names one.
fn data_dir(args: &ServeArgs, file: &FileConfig) -> Result<DataDir, CliError> {
    match (&args.data_dir.data_dir, &file.data_dir) {
        (None, Some(dir)) => Ok(DataDir::at(dir)),
        _ => args.data_dir.resolve(),
    }
}

/// The address to listen on: the flag, the file, or the default.
fn listen_addr(args: &ServeArgs, file: &FileConfig) -> Result<SocketAddr, CliError> {
    let listen = args.listen.clone().or(file.listen.clone()).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    listen.parse().map_err(|_| {
        CliError::usage(
            format!("--listen {listen:?} is not an address"),
            "give an IP address and port, e.g. 127.0.0.1:5555, 0.0.0.0:5555 or [::]:5555",
        )
    })
}

/// `--password-only` without a password to use.
fn password_only_without_password() -> CliError {
    CliError::usage("--password-only needs a password", "add --password-file FILE or --password-prompt")
}

/// Loads the server key, creating the default one on first start.
fn server_key(args: &ServeArgs, file: &FileConfig, data_dir: &DataDir) -> Result<(PathBuf, bool), CliError> {
    if let Some(path) = args.key.as_ref().or(file.key.as_ref()) {
        return Ok((path.clone(), false));
    }
    let path = data_dir.path().join(DEFAULT_KEY_FILE);
    if path.exists() {
        return Ok((path, false));
    }
    create_private_dir(data_dir.path())?;
    let key = PrivateKey::generate(KeyKind::Rsa { bits: 3072 })?;
    write_key_pair(&key, &path, None, false)?;
    Ok((path, true))
}

/// Creates a directory (and its parents) readable only by its owner.
pub fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| {
        CliError::failed(
            format!("cannot create data directory {}: {e}", dir.display()),
            "choose a writable directory with --data-dir or CIPHERLINE_HOME",
        )
    })
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<(), CliError> {
    if args.check_config {
        return check_config(args);
    }
    let file = load_config(args)?;
    let data_dir = data_dir(args, &file)?;
    let addr = listen_addr(args, &file)?;
    let nats_url = store_url(args, &file)?;
    let nats_connection = nats_connection(args, &file, nats_url.is_some())?;

    let password = args.password.resolve(false)?;
    if args.password_only && password.is_none() {
        return Err(password_only_without_password());
    }
    let key = if args.password_only { None } else { Some(server_key(args, &file, &data_dir)?) };
    let key = match key {
        Some((key_path, created)) => {
            let passphrase = args.passphrase.for_existing_key()?;
            let options = LoadOptions::new()
                .passphrase(passphrase.as_ref())
                .allow_insecure_permissions(args.insecure_key_permissions);
            let key = load_server_key(&key_path, &options)?;
            let kind = match key.public_key().rsa_bits() {
                Some(bits) => format!("RSA-{bits}"),
                None => "X25519".to_owned(),
            };
            Some((key, key_path, created, kind))
        }
        None => None,
    };

    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}"), "check system limits"))?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let hangup = hangup_signal()?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            CliError::failed(
                format!("cannot listen on {addr}: {e}"),
                "is another server already using that port? choose another with --listen",
            )
        })?;
        let bound = listener.local_addr().map_err(|e| CliError::failed(format!("listener: {e}"), "try again"))?;
        let protocol = match key {
            Some((key, key_path, created, kind)) => {
                let fingerprint = cipherline_keys::Fingerprint::of_server_key(key.public_key());
                if created {
                    println!("created a new {kind} server key: {}", key_path.display());
                }
                println!("cipherline server listening on {bound}");
                println!("server key: {} ({kind})", key_path.display());
                println!("fingerprint: {fingerprint}");
                println!("             {}", fingerprint.short());
                println!(
                    "clients check this fingerprint on first contact, or pin it with --server-fingerprint {fingerprint}"
                );
                tracing::info!(%bound, key = %fingerprint, password = password.is_some(), "listening");
                cipherline_proto::ServerConfig { password, ..cipherline_proto::ServerConfig::new(Arc::new(key)) }
            }
            None => {
                println!("cipherline server listening on {bound}");
                println!("password-only mode: no server key; clients connect with --password-only and prove the shared password");
                tracing::info!(%bound, "listening in password-only mode");
                let Some(password) = password else {
                    return Err(CliError::usage("--password-only needs a password", "add --password-file FILE"));
                };
                cipherline_proto::ServerConfig::password_only(password)
            }
        };
        if protocol.password.is_some() {
            println!("password mode: clients need --password-file, --password-prompt or CIPHERLINE_PASSWORD");
        }
        let policy = identity_policy(args, &file, &data_dir)?;
        if matches!(policy, IdentityPolicy::Open { .. }) {
            // The names file lives there.
            create_private_dir(data_dir.path())?;
        }
        let allowlist = matches!(policy, IdentityPolicy::Allowlist { .. });
        let identities = Arc::new(Identities::load(policy).map_err(|e| {
            CliError::failed(format!("identity policy: {e}"), "fix the file; each line is NAME SHA256:<fingerprint>")
        })?);
        // Clients prove an identity key: required under the allowlist; in
        // the open policy, asked for (every cipherline client has one) so
        // names can be bound to keys and messages signed.
        let protocol = cipherline_proto::ServerConfig {
            client_auth: if allowlist { ClientAuthRequest::Required } else { ClientAuthRequest::Optional },
            ..protocol
        };
        println!(
            "identities: {}",
            if allowlist {
                "allowlist (only listed keys)"
            } else {
                "open (names bind to the first key that uses them)"
            }
        );
        // Always: SIGHUP's default action would end the server, and
        // `systemctl reload` (contrib/cipherline.service) sends it whatever
        // the policy.
        tokio::spawn(reload_on_sighup(hangup, identities.clone(), allowlist));
        let settings = Settings { protocol: Arc::new(protocol), limits: file.limits.clone() };
        let store = Arc::new(open_store(data_dir.path()).await?);
        let nats_store = match &nats_url {
            Some(url) => {
                let nats = open_nats_store(url, &nats_connection, file.nats.replicas).await?;
                println!("message store: NATS JetStream at {url} (messages wait there for offline recipients)");
                println!("file store: NATS JetStream at {url} (end-to-end files wait there for their recipients)");
                Some(Arc::new(nats))
            }
            None => {
                println!(
                    "message store: {} (messages wait here for offline recipients)",
                    data_dir.path().join(STORE_FILE).display()
                );
                None
            }
        };
        let options = RunOptions { identities, store: Some(store.clone()), nats_store, ..RunOptions::default() };
        cipherline_server::run_with(listener, settings, options, shutdown)
            .await
            .map_err(|e| CliError::failed(format!("server: {e}"), "see the log above"))?;
        // Everything already committed stays; this only waits for the
        // store's thread to finish cleanly.
        if let Ok(store) = Arc::try_unwrap(store) {
            store.close().await;
        }
        println!("cipherline server stopped");
        Ok(())
    })
}

/// The message store's file in the data directory.
const STORE_FILE: &str = "store.sqlite3";

/// Store bounds: a stored message is one whole server message (up to the
/// protocol's 1 MiB) plus a flag byte.
fn store_options() -> cipherline_server::SqliteOptions {
    cipherline_server::SqliteOptions {
        max_payload_bytes: cipherline_proto::app::MAX_MESSAGE + 64,
        ..cipherline_server::SqliteOptions::default()
    }
}

/// Opens (creating, owner-only) the message store in `dir`.
async fn open_store(dir: &std::path::Path) -> Result<cipherline_server::SqliteStore, CliError> {
    create_private_dir(dir)?;
    let path = dir.join(STORE_FILE);
    // Created 0600 before SQLite opens it (its WAL and shared-memory
    // files copy the mode): stored messages are readable by the owner only.
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(|e| {
            CliError::failed(
                format!("cannot create the message store {}: {e}", path.display()),
                "check the data directory's permissions",
            )
        })?;
    }
    cipherline_server::SqliteStore::open(&path, store_options()).await.map_err(|e| {
        CliError::failed(
            format!("cannot open the message store {}: {e}", path.display()),
            "check the file, or move it away to start with an empty store",
        )
    })
}

/// The NATS servers of `--store`, checked for form: `nats://HOST:PORT`,
/// several separated by commas. `None`: the SQLite store.
fn store_url(args: &ServeArgs, file: &FileConfig) -> Result<Option<String>, CliError> {
    let Some(url) = args.store.as_ref().or(file.store.as_ref()) else { return Ok(None) };
    // The address is printed and logged: it must not carry a password.
    if url.contains('@') {
        return Err(CliError::usage(
            "--store takes no user or password in the address",
            "give nats://HOST:PORT and the credentials with --nats-creds FILE (or TLS client certificates)",
        ));
    }
    let servers: Vec<&str> = url.split(',').map(str::trim).collect();
    let well_formed = servers.iter().all(|s| {
        s.strip_prefix("nats://").is_some_and(|rest| {
            rest.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        })
    });
    if !well_formed {
        return Err(CliError::usage(
            format!("--store {url:?} is not a NATS address"),
            "give nats://HOST:PORT, several separated by commas (e.g. nats://127.0.0.1:4222)",
        ));
    }
    Ok(Some(url.clone()))
}

/// How to reach NATS: the flags, else the `[nats]` table. Given without a
/// NATS store they would be silently unused: refused instead. Files are
/// checked (readable) when connecting, and by `--check-config`.
fn nats_connection(
    args: &ServeArgs,
    file: &FileConfig,
    has_store: bool,
) -> Result<cipherline_server::NatsConnection, CliError> {
    let nats = &file.nats;
    let (tls_cert, tls_key) = match (&args.nats_tls_cert, &args.nats_tls_key) {
        (Some(cert), Some(key)) => (Some(cert.clone()), Some(key.clone())),
        _ => (nats.tls_cert.clone(), nats.tls_key.clone()),
    };
    let connection = cipherline_server::NatsConnection {
        creds: args.nats_creds.clone().or(nats.creds.clone()),
        tls_ca: args.nats_tls_ca.clone().or(nats.tls_ca.clone()),
        tls_cert,
        tls_key,
        tls_required: args.nats_tls_required || nats.tls_required,
    };
    if connection.tls_cert.is_some() != connection.tls_key.is_some() {
        return Err(config_error(
            "nats.tls_cert and nats.tls_key go together",
            "give both (the client certificate and its key) or neither",
        ));
    }
    if let Some(n) = nats.replicas
        && !(1..=5).contains(&n)
    {
        return Err(config_error(
            format!("nats.replicas = {n}: JetStream allows 1 to 5"),
            "remove it for min(3, cluster size)",
        ));
    }
    let any = connection.creds.is_some()
        || connection.tls_ca.is_some()
        || connection.tls_cert.is_some()
        || connection.tls_required
        || nats.replicas.is_some();
    if any && !has_store {
        return Err(config_error(
            "NATS connection options given without a NATS store",
            "add --store nats://HOST:PORT (or store = \"nats://…\" in the config file), or drop the NATS options",
        ));
    }
    let files = [
        ("credentials file", &connection.creds),
        ("TLS CA file", &connection.tls_ca),
        ("TLS client certificate", &connection.tls_cert),
        ("TLS client key", &connection.tls_key),
    ];
    for (what, path) in files {
        if let Some(path) = path {
            std::fs::File::open(path).map_err(|e| {
                config_error(format!("cannot read the NATS {what} {}: {e}", path.display()), "check the path")
            })?;
        }
    }
    Ok(connection)
}

/// Connects to NATS and opens the JetStream store there.
async fn open_nats_store(
    url: &str,
    connection: &cipherline_server::NatsConnection,
    replicas: Option<usize>,
) -> Result<cipherline_server::NatsStore, CliError> {
    let options = cipherline_server::NatsOptions {
        max_payload_bytes: cipherline_proto::app::MAX_MESSAGE + 64,
        replicas,
        ..cipherline_server::NatsOptions::default()
    };
    cipherline_server::NatsStore::connect_with(url, connection, options).await.map_err(|e| {
        CliError::failed(
            format!("cannot open the message store on NATS at {url}: {e}"),
            "start nats-server with JetStream (nats-server -js, max_payload 2MB or more) or check the address",
        )
    })
}

/// `serve --check-config`: validates what `serve` would use and exits.
/// Binds nothing and creates no key, directory or file (so it can run as
/// the service user before a start or reload). Every failure exits 2, with
/// the message and hint `serve` itself would give.
fn check_config(args: &ServeArgs) -> Result<(), CliError> {
    check_all(args).map_err(|e| match e {
        CliError::Usage { .. } => e,
        other => {
            let hint = other.hint().unwrap_or_else(|| "fix it, then run the check again".to_owned());
            config_error(other.to_string(), hint)
        }
    })?;
    println!("config OK");
    Ok(())
}

fn check_all(args: &ServeArgs) -> Result<(), CliError> {
    let file = load_config(args)?;
    let data_dir = data_dir(args, &file)?;
    let addr = listen_addr(args, &file)?;
    println!("listen: {addr}");
    println!("data directory: {}", data_dir.path().display());
    let url = store_url(args, &file)?;
    nats_connection(args, &file, url.is_some())?;
    if let Some(url) = url {
        println!("message store: NATS JetStream at {url} (not contacted by the check)");
    }

    // A password file is read (it must exist and hold a password); a prompt
    // is not shown: the check has nothing to compare the answer with.
    if args.password.password_file.is_some() {
        args.password.resolve(false)?;
    }
    let password = args.password.password_file.is_some() || args.password.password_prompt;
    if args.password_only && !password {
        return Err(password_only_without_password());
    }

    if args.password_only {
        println!("server key: none (password-only)");
    } else {
        let explicit = args.key.as_ref().or(file.key.as_ref());
        let path = explicit.cloned().unwrap_or_else(|| data_dir.path().join(DEFAULT_KEY_FILE));
        if explicit.is_none() && !path.exists() {
            println!("server key: {} (not there yet: an RSA-3072 key is created on first start)", path.display());
        } else {
            // Loaded exactly as `serve` loads it: permissions, passphrase, kind.
            let passphrase = args.passphrase.for_existing_key()?;
            let options = LoadOptions::new()
                .passphrase(passphrase.as_ref())
                .allow_insecure_permissions(args.insecure_key_permissions);
            let key = load_server_key(&path, &options)?;
            let fingerprint = cipherline_keys::Fingerprint::of_server_key(key.public_key());
            println!("server key: {} ({fingerprint})", path.display());
        }
    }

    match identity_policy(args, &file, &data_dir)? {
        IdentityPolicy::Allowlist { file } => {
            // Parsed, as at start; an allowlist is only read, never written.
            Identities::load(IdentityPolicy::Allowlist { file: file.clone() }).map_err(|e| {
                config_error(format!("identity policy: {e}"), "fix the file; each line is NAME SHA256:<fingerprint>")
            })?;
            println!("identities: allowlist ({})", file.display());
        }
        // The names file is not loaded: loading repairs a torn last line,
        // and a check writes nothing.
        IdentityPolicy::Open { .. } => println!("identities: open"),
    }
    Ok(())
}

fn identity_policy(args: &ServeArgs, file: &FileConfig, data_dir: &DataDir) -> Result<IdentityPolicy, CliError> {
    let allowlist = args.authorized_keys.clone().or(file.identity.authorized_keys.clone());
    match (file.identity.policy.as_deref(), allowlist) {
        (None | Some("allowlist"), Some(path)) => Ok(IdentityPolicy::Allowlist { file: path }),
        (Some("allowlist"), None) => Err(CliError::usage(
            "the allowlist policy needs an authorized-keys file",
            "set identity.authorized_keys in the config, or pass --authorized-keys FILE",
        )),
        (None | Some("open"), None) => Ok(IdentityPolicy::Open { names_file: Some(data_dir.path().join("names")) }),
        (Some("open"), Some(_)) => Err(CliError::usage(
            "an authorized-keys file was given with the open policy",
            "use policy = \"allowlist\", or drop the file",
        )),
        (Some(other), _) => {
            Err(CliError::usage(format!("unknown identity policy {other:?}"), "use \"open\" or \"allowlist\""))
        }
    }
}

/// SIGHUP, registered for while the server starts (before its banner), so
/// one sent as soon as it says it is listening is handled, not fatal.
#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
/// No SIGHUP off Unix.
#[cfg(not(unix))]
type Hangup = ();

fn hangup_signal() -> Result<Hangup, CliError> {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| CliError::failed(format!("cannot handle signals: {e}"), "check system limits"))
    }
    #[cfg(not(unix))]
    Ok(())
}

/// Re-reads the authorized-keys file on SIGHUP (allowlist policy); under
/// the open policy there is nothing to re-read, and SIGHUP is only logged.
async fn reload_on_sighup(hup: Hangup, identities: Arc<Identities>, allowlist: bool) {
    #[cfg(unix)]
    {
        let mut hup = hup;
        while hup.recv().await.is_some() {
            if !allowlist {
                tracing::info!("SIGHUP: nothing to reload under the open identity policy");
                continue;
            }
            match identities.reload() {
                Ok(n) => tracing::info!(names = n, "authorized keys reloaded"),
                Err(e) => tracing::error!(error = %e, "authorized keys NOT reloaded; the previous list stays in force"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (hup, identities, allowlist);
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// Registers for Ctrl-C (SIGINT) and SIGTERM at once, so a signal that
/// arrives while the server is still starting is not lost (and does not
/// kill it with the default action); the returned future resolves on the
/// first of them.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, CliError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let register = |kind| {
            signal(kind).map_err(|e| CliError::failed(format!("cannot handle signals: {e}"), "check system limits"))
        };
        let mut int = register(SignalKind::interrupt())?;
        let mut term = register(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("signal received; shutting down");
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("signal received; shutting down");
    })
}
