//! `quiver runs list`: recent runs (all of them with the audit permission, your own with
//! execute).

use anyhow::{Context, Result, bail};
use quiver_catalog::api::RunRecord;
use std::process::ExitCode;

use super::run::{Server, client, error_text, query_escape, status_name};

/// Arguments of `quiver runs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// `quiver runs` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List recent runs, newest first.
    List {
        #[command(flatten)]
        server: Server,
        /// Only runs on this device.
        #[arg(long)]
        device: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> Result<ExitCode> {
    let Command::List {
        server,
        device,
        limit,
        json,
    } = args.command;
    let base = server.server.trim_end_matches('/');
    let mut url = format!("{base}/v1/runs?limit={limit}");
    if let Some(d) = device {
        url.push_str(&format!("&device={}", query_escape(&d)));
    }
    let resp = client()?
        .get(&url)
        .bearer_auth(&server.token)
        .send()
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.text()?;
    if !status.is_success() {
        bail!("{status}: {}", error_text(&body));
    }
    let runs: Vec<RunRecord> = serde_json::from_str(&body).context("reading runs")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<29} {:<20} {:<24} {:<10} {:<6} {:<12} REQUESTED",
        "ID", "DEVICE", "SCRIPT", "STATUS", "EXIT", "BY"
    );
    for r in runs {
        println!(
            "{:<29} {:<20} {:<24} {:<10} {:<6} {:<12} {}",
            r.id,
            r.device,
            format!("{}@v{}", r.script, r.version.unwrap_or(0)),
            status_name(r.status),
            r.result
                .as_ref()
                .and_then(|x| x.exit_code)
                .map_or("-".into(), |c| c.to_string()),
            r.requested_by,
            quiver_controller::audit::format_time(r.requested_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}
