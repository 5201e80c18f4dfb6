//! `quiver lint`: placeholder until the linter lands.

use std::process::ExitCode;

/// Arguments of `quiver lint`.
#[derive(clap::Args)]
pub struct Args {
    /// Library folder.
    #[arg(default_value = "library")]
    pub path: std::path::PathBuf,
}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
