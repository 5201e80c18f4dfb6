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
    /// Run the whole flow on the example library: repository, controller, three agents, runs.
    Demo(cmd::demo::Args),
    /// Lint a library folder and its policies (run it on every pull request).
    Lint(cmd::lint::Args),
    /// Every script's deployable version and state, and the policy in effect.
    Status(cmd::status::Args),
    /// Approved versions of a script (or all): who wrote, who approved, when.
    History(cmd::history::Args),
    /// Diff two contents of a script (default: the approved version against the head).
    Diff(cmd::diff::Args),
    /// Run the controller: watch the repository, publish signed snapshots, serve the API.
    Controller(cmd::controller::Args),
    /// Run one reconcile now (on the state directory, or via a running controller).
    Reconcile(cmd::reconcile::Args),
    /// Accept a rewritten branch history (`quiver rewrite ack`).
    Rewrite(cmd::reconcile::RewriteArgs),
    /// Make the controller's signing key pair.
    Keygen(cmd::keygen::Args),
    /// Verify the audit log's hash chain, or start a new chain after a damaged log.
    Audit(cmd::audit::Args),
    /// Create enrollment and member API tokens.
    Token(cmd::token::Args),
    /// List or revoke enrolled endpoints.
    Agents(cmd::agents::Args),
    /// Run a library script on a device through the controller.
    Run(cmd::run::Args),
    /// List runs recorded by the controller.
    Runs(cmd::runs::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Lint(args) => cmd::lint::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::History(args) => cmd::history::run(args),
        Command::Diff(args) => cmd::diff::run(args),
        Command::Controller(args) => cmd::controller::run(args),
        Command::Reconcile(args) => cmd::reconcile::run(args),
        Command::Rewrite(args) => cmd::reconcile::run_rewrite(args),
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::Agents(args) => cmd::agents::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Runs(args) => cmd::runs::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_line(&err));
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr so that `--json` output on stdout stays parseable.
fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("QUIVER_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The error and its causes as one line, `a: b: c`, leaving out a cause whose text the
/// line already holds: many errors repeat their source in their own message, and
/// `{:#}` would print it twice (`No such file or directory (os error 2)` three times).
fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
