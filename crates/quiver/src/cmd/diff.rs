//! `quiver diff SCRIPT [FROM] [TO]`: what changed between two contents of a script.
//! FROM and TO are `vN`, a commit, `approved` (the deployed version) or `head`; the
//! default is approved → head, i.e. exactly what is waiting for approval.

use crate::cmd::status::{Indexed, RepoArgs, emit, open_indexed};
use anyhow::{Context, Result, anyhow, bail};
use quiver_git::diff::{FileStatus, diff_files};
use quiver_git::{FileRef, Index, Repo, ScriptRecord, Version};
use serde_json::json;
use std::fmt::Write as _;
use std::process::ExitCode;

/// Arguments of `quiver diff`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Script name or folder.
    pub script: String,
    /// Old side: `vN`, a commit, `approved` or `head`.
    #[arg(default_value = "approved")]
    pub from: String,
    /// New side: `vN`, a commit, `approved` or `head`.
    #[arg(default_value = "head")]
    pub to: String,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn refs(v: &Version) -> Vec<FileRef> {
    v.files
        .iter()
        .map(|f| FileRef {
            path: f.path.clone(),
            mode: f.mode,
            oid: f.blob.clone(),
        })
        .collect()
}

fn side(index: &Index, repo: &Repo, rec: &ScriptRecord, spec: &str) -> Result<Vec<FileRef>> {
    if spec == "approved" {
        return Ok(rec.deployed_version().map(refs).unwrap_or_default());
    }
    if let Some(n) = spec.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()) {
        let v = rec.version(n).ok_or_else(|| {
            anyhow!(
                "`{}` has no version v{n} (it has {})",
                rec.name,
                rec.versions.len()
            )
        })?;
        return Ok(refs(v));
    }
    let commit = if spec == "head" {
        let head = index.last_commit.as_deref().context("the index is empty")?;
        repo.resolve_commit(head)?
    } else {
        repo.resolve_commit(spec)?
    };
    Ok(index.files_at(repo, rec, commit)?.unwrap_or_default())
}

/// Runs the command.
pub fn run(args: Args) -> Result<ExitCode> {
    let Indexed { repo, index, .. } = open_indexed(&args.repo, args.json)?;
    let Some(rec) = index.script(&args.script) else {
        bail!(
            "no script `{}` in the history of `{}`",
            args.script,
            index.config.branch
        );
    };
    let old = side(&index, &repo, rec, &args.from)?;
    let new = side(&index, &repo, rec, &args.to)?;
    let mut out = String::new();
    let files = diff_files(&repo, &old, &new, (&args.from, &args.to))?;
    if args.json {
        let doc = json!({ "script": rec.name, "from": args.from, "to": args.to, "files": files });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        emit(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut any = false;
    for f in files.iter().filter(|f| f.status != FileStatus::Unchanged) {
        any = true;
        let enc = |s: &Option<quiver_git::diff::Side>| {
            s.as_ref()
                .map(|s| s.encoding.clone())
                .unwrap_or_else(|| "-".into())
        };
        writeln!(
            out,
            "=== {} ({:?}; {} → {})",
            f.path,
            f.status,
            enc(&f.old),
            enc(&f.new)
        )?;
        if let Some(n) = &f.note {
            writeln!(out, "{n}")?;
        }
        if let Some(u) = &f.unified {
            write!(out, "{u}")?;
        }
    }
    if !any {
        writeln!(
            out,
            "no differences between {} and {} of {}",
            args.from, args.to, rec.name
        )?;
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}
