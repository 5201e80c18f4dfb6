//! `quiver reconcile` (run one reconcile now) and `quiver rewrite ack` (accept a rewritten
//! branch). Both work on the state directory directly, or call a running controller's API
//! when `--server` is given.

use anyhow::{Context, Result, bail};
use quiver_controller::controller::ReconcileReport;
use std::path::PathBuf;
use std::process::ExitCode;
use time::OffsetDateTime;

/// Where to reconcile: in-process on the state directory, or through a running controller.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// The controller's configuration file.
    #[arg(long, default_value = "quiver.toml")]
    pub config: PathBuf,
    /// Call the running controller at this URL instead of working on the state directory.
    #[arg(long)]
    pub server: Option<String>,
    /// Member token for `--server` (or QUIVER_TOKEN).
    #[arg(long, env = "QUIVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `quiver reconcile`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
}

/// Arguments of `quiver rewrite`.
#[derive(clap::Args, Debug)]
pub struct RewriteArgs {
    #[command(subcommand)]
    pub command: RewriteCommand,
}

/// `quiver rewrite` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum RewriteCommand {
    /// Accept the rewritten history of the tracked branch and publish from it (the serial
    /// keeps growing). Check the new history first: this is what endpoints will get.
    Ack {
        #[command(flatten)]
        target: Target,
        /// Who acknowledges (recorded in the audit log; default: cli:$USER).
        #[arg(long)]
        by: Option<String>,
    },
}

fn print(report: &ReconcileReport, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        let serial = report.serial.map_or("none".to_string(), |s| s.to_string());
        let head = report.head.as_deref().unwrap_or("unknown");
        println!(
            "{}: serial {serial}, head {head} ({} ms)",
            report.outcome, report.duration_ms
        );
        if let Some(e) = &report.error {
            println!("degraded: {e}");
        }
    }
    Ok(if report.outcome == "degraded" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn remote(target: &Target, path: &str) -> Result<ExitCode> {
    let server = target.server.as_deref().unwrap_or_default();
    let token = target
        .token
        .as_deref()
        .context("--server needs a member token (--token or QUIVER_TOKEN)")?;
    let client = super::run::client()?;
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let resp = client
        .post(&url)
        .bearer_auth(token)
        .send()
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let body = resp.text()?;
    if !status.is_success() || status.as_u16() == 202 {
        bail!("{url}: {status}: {}", super::run::error_text(&body));
    }
    let report: ReconcileReport = serde_json::from_str(&body).context("reading the report")?;
    print(&report, target.json)
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.target.server.is_some() {
        return remote(&args.target, "/v1/reconcile");
    }
    let controller = super::controller::open(&args.target.config)?;
    print(&controller.reconcile_blocking(), args.target.json)
}

pub fn run_rewrite(args: RewriteArgs) -> Result<ExitCode> {
    let RewriteCommand::Ack { target, by } = args.command;
    if target.server.is_some() {
        return remote(&target, "/v1/rewrite/ack");
    }
    let by = by.unwrap_or_else(super::cli_actor);
    let controller = super::controller::open(&target.config)?;
    controller
        .shared
        .store()
        .request_rewrite_ack(&by, OffsetDateTime::now_utc())?;
    let report = controller.reconcile_blocking();
    if report.outcome != "degraded" {
        eprintln!(
            "acknowledged; a running controller picks the new history up on its next reconcile \
             (or run `quiver reconcile --server …`)"
        );
    }
    print(&report, target.json)
}
