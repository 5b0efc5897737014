//! What every client subcommand shares: which server, under which name, and
//! how its key is trusted; and connecting with those.

use std::sync::Mutex;

use cipherline_client::{Client, ClientError, Options};
use cipherline_keys::{Prompt, ServerAddr};
use cipherline_proto::crypto::kem::ServerPublicKey;
use clap::Args;

use crate::error::CliError;
use crate::passphrase::have_terminal;
use crate::password::PasswordArgs;
use crate::trust::{TrustArgs, terminal_prompt};

/// The server address clients use when none is given.
pub const DEFAULT_SERVER: &str = "127.0.0.1:5555";

/// Connection flags shared by chat, send and listen.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_SERVER)]
    pub server: String,

    /// Your display name (letters, digits, '-', '_', '.'). Default: your
    /// user name.
    #[arg(long)]
    pub name: Option<String>,

    #[command(flatten)]
    pub trust: TrustArgs,

    #[command(flatten)]
    pub password: PasswordArgs,
}

/// The login name, made acceptable as a display name; "user" if none.
fn default_name() -> String {
    let raw = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_default();
    let cleaned: String =
        raw.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(32).collect();
    let cleaned = cleaned.trim_start_matches(['-', '.']).to_owned();
    if cleaned.is_empty() { "user".to_owned() } else { cleaned }
}

impl ClientArgs {
    /// The name to use.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(default_name)
    }

    /// Connects, checks the server's key by the trust flags (asking on a
    /// terminal at first contact when `may_prompt`), and says Hello.
    pub async fn connect(&self, may_prompt: bool) -> Result<Client, CliError> {
        let addr: ServerAddr = self.server.parse()?;
        let policy = self.trust.policy()?;
        let refusal: Mutex<Option<cipherline_keys::Error>> = Mutex::new(None);
        let check = |_: &str, key: &ServerPublicKey| {
            let mut ask = terminal_prompt;
            let prompt: Option<Prompt<'_>> = if may_prompt && have_terminal() { Some(&mut ask) } else { None };
            policy.check(&addr, key, prompt).map(drop).map_err(|e| {
                let text = e.to_string();
                if let Ok(mut slot) = refusal.lock() {
                    *slot = Some(e);
                }
                text
            })
        };
        let name = self.name();
        let mut options = Options::default();
        if let Some(password) = self.password.resolve(true)? {
            options.config = std::sync::Arc::new(cipherline_proto::ClientConfig {
                password: Some(password),
                name: Some(name.clone()),
                ..cipherline_proto::ClientConfig::default()
            });
        }
        let result = Client::connect(&addr.to_string(), &name, &options, &check).await;
        result.map_err(|e| match e {
            ClientError::Untrusted(why) => match refusal.lock().ok().and_then(|mut r| r.take()) {
                Some(keys_error) => CliError::Keys(keys_error),
                None => CliError::Client(ClientError::Untrusted(why)),
            },
            other => CliError::Client(other),
        })
    }
}
