//! `quiver agents list|revoke`: the enrolled endpoints, from the state directory.

use anyhow::{Result, bail};
use quiver_controller::audit::{AuditEvent, AuditLog};
use quiver_controller::config::Config;
use quiver_controller::state::Store;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use time::OffsetDateTime;

/// Arguments of `quiver agents`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// `quiver agents` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List enrolled endpoints and their sync state.
    List {
        /// The controller's configuration file.
        #[arg(long, default_value = "quiver.toml")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an endpoint: its token stops working at once. Its device id can then be
    /// enrolled again (a new machine taking over the id) with an enrollment token.
    Revoke {
        /// The controller's configuration file.
        #[arg(long, default_value = "quiver.toml")]
        config: PathBuf,
        /// Agent (device) id.
        id: String,
    },
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::List { config, json } => {
            let config = Config::load(&config)?;
            let store = Store::open(&config.state_db())?;
            // The serial being published, to tell in-sync from behind.
            let serial = store.highest_published()?;
            let agents = store.agents()?;
            if json {
                let rows: Vec<_> = agents
                    .iter()
                    .map(|a| {
                        let mut v = serde_json::to_value(a).unwrap_or_default();
                        v["sync_state"] = json!(a.sync_state(serial));
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<24} {:<8} {:<9} {:<8} {:<25} GROUPS",
                    "ID", "PLATFORM", "STATE", "SERIAL", "LAST CHECK-IN"
                );
                for a in &agents {
                    println!(
                        "{:<24} {:<8} {:<9} {:<8} {:<25} {}",
                        a.id,
                        a.platform.to_string(),
                        a.sync_state(serial),
                        a.applied_serial.map_or("-".into(), |s| s.to_string()),
                        a.last_checkin.as_deref().unwrap_or("never"),
                        a.groups.join(",")
                    );
                    // Why a device is in `error`: the problems of its last check-in.
                    for e in &a.errors {
                        println!("    {}: {}", e.code, e.message);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Revoke { config, id } => {
            let config = Config::load(&config)?;
            let mut store = Store::open(&config.state_db())?;
            let now = OffsetDateTime::now_utc();
            let Some(before) = store.agent(&id)? else {
                bail!("no enrolled agent `{id}` (see `quiver agents list`)");
            };
            if let Some(at) = &before.revoked_at {
                println!("{id} was already revoked at {at}");
                return Ok(ExitCode::SUCCESS);
            }
            if !store.revoke_agent(&id, now)? {
                bail!("no enrolled agent `{id}` (see `quiver agents list`)");
            }
            let by = super::cli_actor();
            store.audit(
                &AuditLog::new(config.audit_log()),
                vec![(
                    // One record per enrollment: a device id enrolled again after a
                    // revocation is audited again when it is revoked again.
                    Some(format!("agent.revoked:{id}:{}", before.enrolled_at)),
                    AuditEvent::new(
                        "agent.revoked",
                        vec![by],
                        format!("agent:{id}"),
                        json!({"agent": id}),
                    ),
                )],
                now,
            )?;
            println!("revoked {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
