//! `cipherline room`: manage rooms from scripts, without chat: create an
//! end-to-end (or open) room, invite and remove members, list them, join a
//! public room, leave.

use std::time::Duration;

use cipherline_client::Client;
use cipherline_client::conversations::Conversations;
use cipherline_client::display::escape;
use cipherline_proto::app::{RoomKind, fold_name};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::client_args::{ClientArgs, Connected};
use crate::conversation;
use crate::error::CliError;

/// Manage rooms: create, invite, remove, list members, join, leave.
///
/// New rooms are end-to-end encrypted and invite-only: the server relays
/// their messages but cannot read them. `--public` makes an end-to-end
/// room anyone may join (`cipherline room join`); `--open` makes a room
/// the server can read, as the lobby is (for bots and broadcasts).
/// End-to-end rooms need an Ed25519 identity key (the default).
#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a room; you are its first member and its admin.
    Create(CreateArgs),
    /// Add users to an end-to-end room (they need to have run a current
    /// cipherline once, so the server holds a key package for them).
    Invite(MembersArgs),
    /// Remove users from an end-to-end room (admins only, in an
    /// invite-only room): they can read nothing said after it.
    Kick(MembersArgs),
    /// List a room's members (for an end-to-end room, as its group states
    /// them, with their key fingerprints).
    Members(RoomArgs),
    /// Join a public end-to-end room (or an open room).
    Join(RoomArgs),
    /// Leave a room.
    Leave(RoomArgs),
}

/// `room create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The room.
    #[arg(value_name = "ROOM")]
    pub room: String,
    /// Anyone may join (still end to end).
    #[arg(long, conflicts_with = "open")]
    pub public: bool,
    /// Not end-to-end encrypted: the server can read it.
    #[arg(long)]
    pub open: bool,
}

/// `room invite` and `room kick`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The room.
    #[arg(value_name = "ROOM")]
    pub room: String,
    /// The users.
    #[arg(value_name = "USER", required = true)]
    pub users: Vec<String>,
}

/// `room members`, `room join`, `room leave`.
#[derive(Debug, Args)]
pub struct RoomArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The room.
    #[arg(value_name = "ROOM")]
    pub room: String,
    /// `members`: one JSON object per member.
    #[arg(long)]
    pub json: bool,
}

/// Runs `room`.
pub async fn run(command: &RoomCommand) -> Result<(), CliError> {
    match command {
        RoomCommand::Create(args) => create(args).await,
        RoomCommand::Invite(args) => change(args, true).await,
        RoomCommand::Kick(args) => change(args, false).await,
        RoomCommand::Members(args) => members(args).await,
        RoomCommand::Join(args) => join(args).await,
        RoomCommand::Leave(args) => leave(args).await,
    }
}

fn needs_e2e(e2e: Option<&Conversations>) -> Result<&Conversations, CliError> {
    e2e.ok_or_else(|| {
        CliError::usage(
            "end-to-end rooms need an Ed25519 identity key and a server that stores messages for you",
            "use the default identity (drop --no-identity; an RSA identity cannot sign MLS), or create an open room \
             with --open",
        )
    })
}

/// Processes what waited for this user (commits, invitations), so a
/// change starts from the relay's current epoch.
async fn caught_up(connected: &mut Connected) -> Result<(), CliError> {
    if let Some(e2e) = &connected.e2e {
        let cursor = e2e.store().cursor(&connected.server).map_err(CliError::Client)?;
        e2e.catch_up(&mut connected.client, cursor, Duration::from_millis(300), Duration::from_secs(10)).await?;
    }
    Ok(())
}

async fn create(args: &CreateArgs) -> Result<(), CliError> {
    let mut connected = args.client.connect(true).await?;
    if args.open {
        connected.client.create_room(&args.room, RoomKind::Open, Vec::new()).await?;
        eprintln!("created {} (open: not end-to-end encrypted, the server can read it)", escape(&args.room));
    } else {
        let e2e = needs_e2e(connected.e2e.as_ref())?;
        e2e.create_room(&mut connected.client, &args.room, args.public).await?;
        eprintln!(
            "created {} (end-to-end encrypted, {})",
            escape(&args.room),
            if args.public { "public: anyone may join" } else { "invite-only" }
        );
    }
    close(connected.client).await;
    Ok(())
}

/// Tries a commit again after catching up when another member's commit
/// won the epoch (at most three times).
async fn change(args: &MembersArgs, invite: bool) -> Result<(), CliError> {
    let mut connected = args.client.connect(true).await?;
    caught_up(&mut connected).await?;
    let Connected { client, peers, e2e, server, .. } = &mut connected;
    let e2e = needs_e2e(e2e.as_ref())?;
    let mut tries = 0;
    loop {
        let result = if invite {
            let mut check = conversation::key_check(peers);
            e2e.invite(client, &args.room, &args.users, &mut check).await
        } else {
            e2e.remove(client, &args.room, &args.users).await
        };
        match result {
            Ok(()) => break,
            Err(cipherline_client::ClientError::Stale { .. }) if tries < 3 => {
                tries += 1;
                let cursor = e2e.store().cursor(server).map_err(CliError::Client)?;
                e2e.catch_up(client, cursor, Duration::from_millis(300), Duration::from_secs(10)).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let names: Vec<String> = args.users.iter().map(|u| escape(u).into_owned()).collect();
    eprintln!("{} {} {}", if invite { "added" } else { "removed" }, names.join(", "), escape(&args.room));
    close(connected.client).await;
    Ok(())
}

async fn members(args: &RoomArgs) -> Result<(), CliError> {
    let mut connected = args.client.connect(true).await?;
    caught_up(&mut connected).await?;
    let Connected { client, peers, e2e, .. } = &mut connected;
    let in_group = match e2e {
        Some(e2e) => e2e.room_group(&args.room).map_err(CliError::Client)?.is_some(),
        None => false,
    };
    if let (Some(e2e), true) = (e2e.as_ref(), in_group) {
        for (name, key) in e2e.members(&args.room).map_err(CliError::Client)? {
            let key = cipherline_proto::crypto::sign::IdentityPublicKey::ed25519_from_raw(&key);
            let fp = cipherline_keys::Fingerprint::from_bytes(key.fingerprint());
            let state =
                if fold_name(&name) == fold_name(client.name()) { "you" } else { peers.check_key(&name, &key).label() };
            if args.json {
                println!("{}", json!({ "name": name, "fingerprint": fp.to_string(), "key": state, "e2e": true }));
            } else {
                println!("{} {fp} ({state})", escape(&name));
            }
        }
    } else {
        for name in client.who(&args.room).await? {
            if args.json {
                println!("{}", json!({ "name": name, "e2e": false }));
            } else {
                println!("{}", escape(&name));
            }
        }
        if !args.json {
            eprintln!("note: {} is not end-to-end encrypted: the server can read it", escape(&args.room));
        }
    }
    close(connected.client).await;
    Ok(())
}

async fn join(args: &RoomArgs) -> Result<(), CliError> {
    let mut connected = args.client.connect(true).await?;
    let info = connected.client.room_info(&args.room).await?;
    match info.kind {
        Some(RoomKind::Public) => {
            let e2e = needs_e2e(connected.e2e.as_ref())?;
            let mut tries = 0;
            loop {
                match e2e.join_public(&mut connected.client, &args.room).await {
                    Ok(()) => break,
                    Err(cipherline_client::ClientError::Stale { .. }) if tries < 3 => tries += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            eprintln!("joined {} (end-to-end encrypted)", escape(&args.room));
        }
        Some(RoomKind::Invite) => {
            return Err(CliError::failed(
                format!("{} is end-to-end encrypted and invite-only", escape(&args.room)),
                format!(
                    "ask a member to run `cipherline room invite {} {}`",
                    escape(&args.room),
                    escape(connected.client.name())
                ),
            ));
        }
        Some(RoomKind::Open) | None => {
            connected.client.join(&args.room).await?;
            eprintln!("joined {} (open: not end-to-end encrypted, the server can read it)", escape(&args.room));
        }
    }
    close(connected.client).await;
    Ok(())
}

async fn leave(args: &RoomArgs) -> Result<(), CliError> {
    let mut connected = args.client.connect(true).await?;
    match &connected.e2e {
        Some(e2e) if e2e.room_group(&args.room).map_err(CliError::Client)?.is_some() => {
            e2e.leave(&mut connected.client, &args.room).await?;
        }
        _ => connected.client.leave(&args.room).await?,
    }
    eprintln!("left {}", escape(&args.room));
    close(connected.client).await;
    Ok(())
}

async fn close(client: Client) {
    let _ = client.close().await;
}
