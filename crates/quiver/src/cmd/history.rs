//! `quiver history [SCRIPT]`: approved versions with who wrote, who approved, and when.

use crate::cmd::status::{EXIT_REWRITE, Indexed, RepoArgs, emit, open_indexed};
use anyhow::{Result, bail};
use quiver_git::ScriptRecord;
use serde_json::json;
use std::fmt::Write as _;
use std::process::ExitCode;

/// Arguments of `quiver history`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Script name or folder (default: every script).
    pub script: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn record_json(r: &ScriptRecord) -> serde_json::Value {
    json!({
        "name": r.name,
        "dir": r.dir,
        "renamed_from": r.renamed_from,
        "state": r.state(),
        "reason": r.reason(),
        "deployed": r.deployed,
        "versions": r.versions,
    })
}

/// Runs the command.
pub fn run(args: Args) -> Result<ExitCode> {
    let Indexed { index, rewrite, .. } = open_indexed(&args.repo, args.json)?;
    let mut out = String::new();
    let mut records: Vec<&ScriptRecord> = match &args.script {
        Some(s) => match index.script(s) {
            Some(r) => vec![r],
            None => bail!(
                "no script `{s}` in the history of `{}` (names and folders are case-sensitive)",
                index.config.branch
            ),
        },
        None => index.scripts.values().collect(),
    };
    records.sort_by(|a, b| a.name.cmp(&b.name).then(a.dir.cmp(&b.dir)));
    if args.json {
        let doc = match (&args.script, records.first()) {
            (Some(_), Some(r)) => record_json(r),
            _ => json!({
                "branch": index.config.branch,
                "head": index.last_commit,
                "scripts": records.iter().map(|r| record_json(r)).collect::<Vec<_>>(),
            }),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        if let Some(r) = &rewrite {
            writeln!(out, "ALERT: {r}\n")?;
        }
        for r in records {
            let moved = if r.renamed_from.is_empty() {
                String::new()
            } else {
                format!(" (moved from {})", r.renamed_from.join(", "))
            };
            writeln!(
                out,
                "{} — {}/{}{moved} — {}",
                r.name,
                index.config.library,
                r.dir,
                r.state().as_str()
            )?;
            if let Some(reason) = r.reason() {
                writeln!(out, "  {reason}")?;
            }
            for v in r.versions.iter().rev() {
                let authors: Vec<String> = v.authors.iter().map(|a| a.to_string()).collect();
                let approvers = if v.approvers.is_empty() {
                    "-".to_string()
                } else {
                    v.approvers.join(", ")
                };
                let deployed = if r.deployed == Some(v.number) {
                    "  (deployed)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "  v{:<3} {} {}  {}{deployed}\n        by {} · approved by {} ({:?}) · digest {}",
                    v.number,
                    &v.commit[..10.min(v.commit.len())],
                    v.time_utc,
                    v.summary,
                    authors.join(", "),
                    approvers,
                    v.evidence,
                    &v.digest[..16.min(v.digest.len())]
                )?;
            }
            writeln!(out)?;
        }
    }
    emit(&out)?;
    Ok(if rewrite.is_some() {
        ExitCode::from(EXIT_REWRITE)
    } else {
        ExitCode::SUCCESS
    })
}
