//! `quiver status`: every script's deployable version and state, and the policy in effect.
//! Also home of [`RepoArgs`], the repository options shared by `history` and `diff`.

use anyhow::{Context, Result};
use quiver_git::{Index, IndexConfig, Repo, State, TrustAnchor};
use serde_json::json;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code when the branch was rewritten (the last indexed commit is gone).
pub const EXIT_REWRITE: u8 = 3;

/// Which repository, branch, folders and trust anchor to read.
#[derive(clap::Args, Debug, Clone)]
pub struct RepoArgs {
    /// The library's git repository (work tree or bare); objects are read, never the work tree.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Tracked branch.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Library folder in the repository.
    #[arg(long, default_value = "library")]
    pub library: String,
    /// Policy folder in the repository.
    #[arg(long, default_value = "policies")]
    pub policies: String,
    /// Trust the policy and scripts at this commit (default: the branch's first commit).
    #[arg(long, conflicts_with = "trust_root_approver")]
    pub trust_commit: Option<String>,
    /// Until an approved policy exists, accept changes approved (trailer) by these emails.
    #[arg(long, num_args = 1..)]
    pub trust_root_approver: Vec<String>,
    /// Keep the version index in this JSON file and update it incrementally.
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// The branch was rewritten and an operator accepts the new history: rebuild the index.
    #[arg(long)]
    pub accept_rewrite: bool,
}

impl RepoArgs {
    fn config(&self) -> IndexConfig {
        let trust = if let Some(c) = &self.trust_commit {
            TrustAnchor::Commit(c.clone())
        } else if !self.trust_root_approver.is_empty() {
            TrustAnchor::RootApprovers(self.trust_root_approver.clone())
        } else {
            TrustAnchor::FirstCommit
        };
        IndexConfig {
            branch: self.branch.clone(),
            library: self.library.trim_matches('/').to_string(),
            policies: self.policies.trim_matches('/').to_string(),
            trust,
        }
    }
}

/// An opened repository and its up-to-date index, or the rewrite that stopped it.
pub struct Indexed {
    /// The repository.
    pub repo: Repo,
    /// The index (at the last good state when `rewrite` is set).
    pub index: Index,
    /// Set when the branch was rewritten and nothing moved.
    pub rewrite: Option<quiver_git::Rewrite>,
}

/// Opens the repository and brings the index up to date, with a progress bar on a
/// terminal (never with `--json`, never when stderr is not a terminal).
pub fn open_indexed(args: &RepoArgs, json: bool) -> Result<Indexed> {
    let repo = Repo::open(&args.repo).map_err(|e| {
        anyhow::anyhow!("{e} (name the library's repository with --repo PATH; the default is the current folder)")
    })?;
    let config = args.config();
    let mut index = match &args.index {
        Some(path) if path.exists() && !args.accept_rewrite => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            match Index::from_json(&bytes) {
                Ok(i) if i.config == config => i,
                Ok(_) => Index::new(config.clone()),
                Err(e) => {
                    tracing::warn!("{}: {e}; rebuilding the index", path.display());
                    Index::new(config.clone())
                }
            }
        }
        _ => Index::new(config.clone()),
    };
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("indexing {pos}/{len} commits {wide_bar} {eta}")
        {
            bar.set_style(style);
        }
        bar
    });
    let mut progress = |done: usize, total: usize| {
        if let Some(b) = &bar
            && total >= 200
        {
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    };
    let opts = quiver_git::UpdateOptions {
        forge: &quiver_git::NoForge,
        progress: Some(&mut progress),
    };
    let rewrite = match index.update_with(&repo, opts) {
        Ok(_) => None,
        Err(quiver_git::Error::Rewrite(r)) => Some(r),
        Err(e) => return Err(e.into()),
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if rewrite.is_none()
        && let Some(path) = &args.index
    {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, index.to_json())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Indexed {
        repo,
        index,
        rewrite,
    })
}

/// Writes command output to stdout; a closed pipe (`| head`) is not an error.
pub fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Arguments of `quiver status`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command: exit 0, or 3 when the branch was rewritten.
pub fn run(args: Args) -> Result<ExitCode> {
    let Indexed { index, rewrite, .. } = open_indexed(&args.repo, args.json)?;
    let mut out = String::new();
    let mut records: Vec<&quiver_git::ScriptRecord> = index.scripts.values().collect();
    records.sort_by(|a, b| a.name.cmp(&b.name).then(a.dir.cmp(&b.dir)));
    let scripts: Vec<_> = records
        .iter()
        .map(|r| {
            let v = r.deployed_version();
            json!({
                "name": r.name,
                "dir": r.dir,
                "version": v.map(|v| v.number),
                "commit": v.map(|v| v.commit.clone()),
                "digest": v.map(|v| v.digest.clone()),
                "state": r.state(),
                "reason": r.reason(),
                "pending_commit": r.pending_commit(),
                "renamed_from": r.renamed_from,
            })
        })
        .collect();
    if args.json {
        let doc = json!({
            "branch": index.config.branch,
            "head": index.last_commit,
            "policy_commit": index.policy.commit,
            "policy_trust": index.policy.trust,
            "policy_approvers": index.policy.approvers,
            "policy_error": index.policy.error,
            "policy_drift": index.policy.drift,
            "rewrite": rewrite,
            "scripts": scripts,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        let short = |s: &Option<String>| {
            s.as_deref()
                .map(|s| s[..10.min(s.len())].to_string())
                .unwrap_or_else(|| "-".into())
        };
        if let Some(r) = &rewrite {
            writeln!(out, "ALERT: {r}")?;
            writeln!(
                out,
                "showing the last good state; rerun with --accept-rewrite to index the new history\n"
            )?;
        }
        writeln!(
            out,
            "branch {} at {} · policy from {} (trust: {})",
            index.config.branch,
            short(&index.last_commit),
            short(&index.policy.commit),
            index.policy.trust
        )?;
        if let Some(e) = &index.policy.error {
            writeln!(out, "policy error (degraded): {}", e.reason)?;
        }
        if let Some(d) = &index.policy.drift {
            writeln!(out, "policy drifted: {}", d.reason)?;
        }
        let width = index
            .scripts
            .values()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        writeln!(
            out,
            "{:width$}  {:7}  {:8}  REASON",
            "SCRIPT", "VERSION", "STATE"
        )?;
        for r in &records {
            let version = r
                .deployed
                .map(|n| format!("v{n}"))
                .unwrap_or_else(|| "-".into());
            let state = r.state();
            let reason = if state == State::Approved {
                String::new()
            } else {
                r.reason().unwrap_or_default()
            };
            writeln!(
                out,
                "{:width$}  {version:7}  {:8}  {reason}",
                r.name,
                state.as_str()
            )?;
        }
    }
    emit(&out)?;
    Ok(if rewrite.is_some() {
        ExitCode::from(EXIT_REWRITE)
    } else {
        ExitCode::SUCCESS
    })
}
