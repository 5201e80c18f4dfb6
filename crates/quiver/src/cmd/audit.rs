//! `quiver audit verify FILE`: check the audit log's hash chain.
//!
//! Prints `OK: N records`, or the first broken record (`record 17 (line 17): hash
//! mismatch`, `sequence gap`, `prev does not match record 16`) and exits 1.

use anyhow::Result;
use quiver_controller::audit::{AuditError, verify};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

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
}

pub fn run(args: Args) -> Result<ExitCode> {
    let Command::Verify { file, json } = args.command;
    match verify(&file) {
        Ok(v) => {
            if json {
                println!("{}", json!({"ok": true, "records": v.records}));
            } else {
                println!("OK: {} records", v.records);
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
