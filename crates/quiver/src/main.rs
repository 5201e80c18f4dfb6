//! `quiver`: the command line. Thin by design: it parses arguments, wires the library
//! crates together and maps outcomes to exit codes. Each command lives in `cmd/<name>.rs`
//! with its own argument struct and a `run` function.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// GitOps for live-response script libraries.
#[derive(Parser)]
#[command(name = "quiver", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr: `text` for people, `json` for SIEM ingestion.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lint a library folder and its policies (run it on every pull request).
    Lint(cmd::lint::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    let result = match cli.command {
        Command::Lint(args) => cmd::lint::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr so that `--json` output on stdout stays parseable.
fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("QUIVER_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
