//! `cipherline room`: manage rooms from scripts, without chat: create an
//! end-to-end (or open) room, invite and remove members, list them, join a
//! public room, leave. Each runs one command on a one-shot client engine
//! ([`crate::connector::one_shot`]): the engine does the work, this says
//! what happened, every peer string escaped.

use cipherline_client::display::escape;
use cipherline_client::engine::{Command, EngineHandle, KeyState, Reply, RoomSummary};
use cipherline_proto::app::{RoomKind, Target, fold_name};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::client_args::ClientArgs;
use crate::connector::one_shot;
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
pub async fn run(command: &'static RoomCommand) -> Result<(), CliError> {
    let client = match command {
        RoomCommand::Create(a) => &a.client,
        RoomCommand::Invite(a) | RoomCommand::Kick(a) => &a.client,
        RoomCommand::Members(a) | RoomCommand::Join(a) | RoomCommand::Leave(a) => &a.client,
    };
    tokio::task::LocalSet::new()
        .run_until(async move {
            let (handle, events, engine) = one_shot(client).await?;
            let result = run_on(&handle, command).await;
            drop((handle, events));
            engine.stop().await;
            result
        })
        .await
}

async fn run_on(engine: &EngineHandle, command: &RoomCommand) -> Result<(), CliError> {
    match command {
        RoomCommand::Create(args) => create(engine, args).await,
        RoomCommand::Invite(args) => change(engine, args, true).await,
        RoomCommand::Kick(args) => change(engine, args, false).await,
        RoomCommand::Members(args) => members(engine, args).await,
        RoomCommand::Join(args) => join(engine, args).await,
        RoomCommand::Leave(args) => leave(engine, args).await,
    }
}

/// This user's name as the server accepted it, and whether it has an
/// end-to-end engine.
async fn status(engine: &EngineHandle) -> Result<(String, bool), CliError> {
    match engine.status().await? {
        Reply::Status(s) => Ok((s.name, s.e2e)),
        _ => Err(unexpected()),
    }
}

fn unexpected() -> CliError {
    CliError::failed("the client engine answered something unexpected", "try again")
}

fn needs_e2e(e2e: bool) -> Result<(), CliError> {
    if e2e {
        return Ok(());
    }
    Err(CliError::usage(
        "end-to-end rooms need an Ed25519 identity key and a server that stores messages for you",
        "use the default identity (drop --no-identity; an RSA identity cannot sign MLS), or create an open room \
         with --open",
    ))
}

async fn room_info(engine: &EngineHandle, room: &str) -> Result<RoomSummary, CliError> {
    match engine.run(Command::RoomInfo(room.to_owned())).await? {
        Reply::RoomInfo(info) => Ok(info),
        _ => Err(unexpected()),
    }
}

/// Whether `room` is an end-to-end room this user is in; if so it is
/// brought up to the relay's epoch first (what waited: commits,
/// invitations), so a change or a member list starts from it.
async fn caught_up(engine: &EngineHandle, room: &str) -> Result<bool, CliError> {
    let info = room_info(engine, room).await?;
    let mine = info.kind.is_some_and(RoomKind::is_e2e) && info.member;
    if mine {
        engine.run(Command::Prepare(Target::Room(room.to_owned()))).await?;
    }
    Ok(mine)
}

async fn create(engine: &EngineHandle, args: &CreateArgs) -> Result<(), CliError> {
    let kind = if args.open {
        RoomKind::Open
    } else {
        needs_e2e(status(engine).await?.1)?;
        if args.public { RoomKind::Public } else { RoomKind::Invite }
    };
    engine.run(Command::Create { room: args.room.clone(), kind }).await?;
    if args.open {
        eprintln!("created {} (open: not end-to-end encrypted, the server can read it)", escape(&args.room));
    } else {
        eprintln!(
            "created {} (end-to-end encrypted, {})",
            escape(&args.room),
            if args.public { "public: anyone may join" } else { "invite-only" }
        );
    }
    Ok(())
}

/// Adds or removes members; the engine tries a commit again (after
/// handling the commits that won) when another member's took the epoch.
async fn change(engine: &EngineHandle, args: &MembersArgs, invite: bool) -> Result<(), CliError> {
    needs_e2e(status(engine).await?.1)?;
    caught_up(engine, &args.room).await?;
    let (room, users) = (args.room.clone(), args.users.clone());
    let command = if invite { Command::Invite { room, users } } else { Command::Kick { room, users } };
    engine.run(command).await?;
    let names: Vec<String> = args.users.iter().map(|u| escape(u).into_owned()).collect();
    eprintln!("{} {} {}", if invite { "added" } else { "removed" }, names.join(", "), escape(&args.room));
    Ok(())
}

/// The label `room members` shows for a member's key.
fn key_label(state: KeyState) -> &'static str {
    match state {
        KeyState::New => "new",
        KeyState::Known => "known",
        KeyState::Verified => "verified",
        KeyState::Changed => "key-changed",
        KeyState::Unknown => "unknown",
    }
}

async fn members(engine: &EngineHandle, args: &RoomArgs) -> Result<(), CliError> {
    let (me, _) = status(engine).await?;
    let e2e = caught_up(engine, &args.room).await?;
    let Reply::Members(list) = engine.run(Command::Members(args.room.clone())).await? else {
        return Err(unexpected());
    };
    for m in list {
        match (&m.fingerprint, e2e) {
            (Some(fp), true) => {
                let state = if fold_name(&m.name) == fold_name(&me) { "you" } else { key_label(m.key) };
                if args.json {
                    println!("{}", json!({ "name": m.name, "fingerprint": fp, "key": state, "e2e": true }));
                } else {
                    println!("{} {fp} ({state})", escape(&m.name));
                }
            }
            _ if args.json => println!("{}", json!({ "name": m.name, "e2e": false })),
            _ => println!("{}", escape(&m.name)),
        }
    }
    if !e2e && !args.json {
        eprintln!("note: {} is not end-to-end encrypted: the server can read it", escape(&args.room));
    }
    Ok(())
}

async fn join(engine: &EngineHandle, args: &RoomArgs) -> Result<(), CliError> {
    let info = room_info(engine, &args.room).await?;
    match info.kind {
        Some(RoomKind::Public) => {
            needs_e2e(status(engine).await?.1)?;
            engine.join(&args.room).await?;
            eprintln!("joined {} (end-to-end encrypted)", escape(&args.room));
        }
        Some(RoomKind::Invite) => {
            let (me, _) = status(engine).await?;
            return Err(CliError::failed(
                format!("{} is end-to-end encrypted and invite-only", escape(&args.room)),
                format!("ask a member to run `cipherline room invite {} {}`", escape(&args.room), escape(&me)),
            ));
        }
        Some(RoomKind::Open) | None => {
            engine.join(&args.room).await?;
            eprintln!("joined {} (open: not end-to-end encrypted, the server can read it)", escape(&args.room));
        }
    }
    Ok(())
}

async fn leave(engine: &EngineHandle, args: &RoomArgs) -> Result<(), CliError> {
    engine.leave(&args.room).await?;
    eprintln!("left {}", escape(&args.room));
    Ok(())
}
