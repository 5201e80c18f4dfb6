//! `quiver audit verify FILE`: check the audit log's hash chain.
//!
//! Prints `OK: N records`, or the first broken record (`record 17 (line 17): hash
//! mismatch`, `sequence gap`, `prev does not match record 16`) and exits 1.
//!
//! `quiver audit new-chain --config FILE --reason TEXT`: after a damaged log was moved
//! aside, lets the controller start a new one, whose first record names the end of the
//! old chain and the reason.

use anyhow::{Result, bail};
use quiver_controller::audit::{AuditError, AuditEvent, AuditLog, verify};
use quiver_controller::config::Config;
use quiver_controller::state::Store;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use time::OffsetDateTime;

/// Arguments of `quiver audit`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// `quiver audit` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Verify the hash chain of an audit log (`state_dir/audit.jsonl`).
    Verify {
        /// The audit log.
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a new audit chain after the old log was moved aside (a controller refuses
    /// to start on a log that does not verify or was cut short). The first record of the
    /// new log names the end of the old chain, who started the new one and why.
    NewChain {
        /// The controller's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Why (recorded in the new chain's first record).
        #[arg(long)]
        reason: String,
    },
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (file, json) = match args.command {
        Command::Verify { file, json } => (file, json),
        Command::NewChain { config, reason } => return new_chain(&config, &reason),
    };
    match verify(&file) {
        Ok(v) => {
            // The head hash, to keep somewhere else: a chain proves only that it is
            // consistent with itself, so compare its head with a copy to notice a rewrite.
            if json {
                println!(
                    "{}",
                    json!({"ok": true, "records": v.records,
                           "last_seq": v.tip().map(|t| t.seq), "last_hash": v.tip().map(|t| t.hash)})
                );
            } else {
                println!("OK: {} records", v.records);
                if let Some(t) = v.tip() {
                    println!("last record: seq {}, hash {}", t.seq, t.hash);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(AuditError::Broken { broken, .. }) => {
            if json {
                println!(
                    "{}",
                    json!({"ok": false, "record": broken.record, "line": broken.line,
                           "problem": broken.problem, "message": broken.to_string()})
                );
            } else {
                println!("{broken}");
            }
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

fn new_chain(config: &std::path::Path, reason: &str) -> Result<ExitCode> {
    let config = Config::load(config)?;
    let path = config.audit_log();
    if path.exists() {
        bail!(
            "{} still exists: move it aside first (keep it as evidence), then run this again",
            path.display()
        );
    }
    if reason.trim().is_empty() {
        bail!("--reason must say why the old chain ends");
    }
    let mut store = Store::open(&config.state_db())?;
    let previous = store.audit_tip()?;
    store.forget_audit_tip()?;
    let by = super::cli_actor();
    let records = store.audit(
        &AuditLog::new(&path),
        vec![(
            None,
            AuditEvent::new(
                "audit.chain_started",
                vec![by],
                "audit",
                json!({
                    "reason": reason,
                    "previous_last_seq": previous.as_ref().map(|t| t.seq),
                    "previous_last_hash": previous.as_ref().map(|t| t.hash.clone()),
                }),
            ),
        )],
        OffsetDateTime::now_utc(),
    )?;
    println!(
        "started a new audit chain at {} ({} record); the old chain ended at record {}",
        path.display(),
        records.len(),
        previous.map_or("-".to_string(), |t| t.seq.to_string())
    );
    Ok(ExitCode::SUCCESS)
}
