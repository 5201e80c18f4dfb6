//! `quiver token create`: enrollment tokens for endpoints and API tokens for members.
//! Works on the state directory directly; the token is printed once and only its SHA-256
//! is stored.

use anyhow::{Context, Result, bail};
use quiver_controller::audit::AuditEvent;
use quiver_controller::source::LibrarySource;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use time::OffsetDateTime;

/// Arguments of `quiver token`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// `quiver token` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a token (printed once).
    Create(CreateArgs),
}

/// Arguments of `quiver token create`: exactly one of `--enroll` and `--member`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["enroll", "member"])))]
pub struct CreateArgs {
    /// The controller's configuration file.
    #[arg(long, default_value = "quiver.toml")]
    pub config: PathBuf,
    /// An enrollment token for endpoints (`quiver-agent enroll`).
    #[arg(long)]
    pub enroll: bool,
    /// An API token for this member (must be a member in the policy in effect).
    #[arg(long, value_name = "ID")]
    pub member: Option<String>,
    /// How long an enrollment token stays valid.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub expires: std::time::Duration,
    /// How many endpoints may enroll with it.
    #[arg(long, default_value_t = 1)]
    pub uses: u32,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let Command::Create(a) = args.command;
    let config = quiver_controller::config::Config::load(&a.config)?;
    let store = quiver_controller::state::Store::open(&config.state_db())?;
    let now = OffsetDateTime::now_utc();
    let by = super::cli_actor();
    let audit = quiver_controller::audit::AuditLog::new(config.audit_log());
    let mut store = store;
    if a.enroll {
        if a.uses == 0 {
            bail!("--uses must be at least 1");
        }
        let expires = now + time::Duration::try_from(a.expires).context("--expires is too long")?;
        let token = store.create_enroll_token(expires, a.uses, now)?;
        store.audit(
            &audit,
            vec![(
                None,
                AuditEvent::new(
                    "token.created",
                    vec![by],
                    "enroll",
                    json!({"kind": "enroll", "uses": a.uses,
                       "expires": quiver_controller::audit::format_time(expires),
                       "token_sha256": quiver_controller::state::token_hash(&token)}),
                ),
            )],
            now,
        )?;
        println!("{token}");
        eprintln!(
            "enrollment token for {} endpoint(s), valid until {}; it is shown only once",
            a.uses,
            quiver_controller::audit::format_time(expires)
        );
    } else if let Some(member) = a.member {
        // The member must exist in the policy in effect, read from the repository.
        let mut source = quiver_controller::gitsource::GitSource::new(&config);
        let desired = source
            .desired_state()
            .map_err(|e| anyhow::anyhow!("reading the policy in effect: {e}"))?;
        if desired.policy.member(&member).is_none() {
            let known: Vec<&str> = desired
                .policy
                .members
                .iter()
                .map(|m| m.id.as_str())
                .collect();
            bail!(
                "no member `{member}` in the policy in effect (commit {}); known: {}",
                desired.policy_commit,
                known.join(", ")
            );
        }
        let token = store.create_member_token(&member, now)?;
        store.audit(
            &audit,
            vec![(
                None,
                AuditEvent::new(
                    "token.created",
                    vec![by],
                    format!("member:{member}"),
                    json!({"kind": "member", "member": member,
                       "token_sha256": quiver_controller::state::token_hash(&token)}),
                ),
            )],
            now,
        )?;
        println!("{token}");
        eprintln!("API token for member {member}; it is shown only once");
    }
    Ok(ExitCode::SUCCESS)
}
