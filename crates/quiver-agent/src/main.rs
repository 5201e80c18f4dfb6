//! `quiver-agent`: parse the command line, call the library, print, map errors to exit codes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use quiver_agent::config::{StateDir, default_state_dir};
use quiver_agent::daemon::{Daemon, DaemonOptions, shutdown_on_signals};
use quiver_agent::enroll::{EnrollOptions, enroll};
use quiver_agent::fetch::Timeouts;
use quiver_agent::report::sync_and_checkin;
use quiver_agent::sync::SyncOptions;
use quiver_agent::{Agent, Error, exit};
use quiver_catalog::Platform;
use serde_json::json;

/// The quiver endpoint agent: keeps a verified cache of approved scripts and runs them.
#[derive(Parser, Debug)]
#[command(name = "quiver-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enroll this device with a controller and pin its public key.
    Enroll(EnrollArgs),
    /// Fetch, verify and apply the latest snapshot once, then check in.
    Sync(SyncArgs),
    /// List the scripts in the current snapshot.
    List(ListArgs),
    /// Run a script from the current snapshot and report it to the controller.
    Run(RunArgs),
    /// Poll the controller, sync, and run dispatched scripts until stopped.
    Daemon(DaemonArgs),
}

#[derive(Args, Debug)]
struct StateArgs {
    /// State directory [default: /var/lib/quiver-agent, C:\ProgramData\quiver-agent,
    /// /Library/Application Support/quiver-agent].
    #[arg(long, env = "QUIVER_AGENT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl StateArgs {
    fn state(&self) -> StateDir {
        StateDir::new(self.state_dir.clone().unwrap_or_else(default_state_dir))
    }
}

#[derive(Args, Debug, Clone, Copy)]
struct NetArgs {
    /// Limit for one HTTP request, body included (e.g. 60s, 2m).
    #[arg(long, env = "QUIVER_AGENT_TIMEOUT", default_value = "60s", value_parser = duration)]
    timeout: Duration,
    /// Limit for establishing a connection.
    #[arg(long, env = "QUIVER_AGENT_CONNECT_TIMEOUT", default_value = "10s", value_parser = duration)]
    connect_timeout: Duration,
    /// Limit for a whole sync, all downloads together.
    #[arg(long, env = "QUIVER_AGENT_DEADLINE", default_value = "15m", value_parser = duration)]
    deadline: Duration,
}

impl NetArgs {
    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            request: self.timeout,
            deadline: self.deadline,
        }
    }
}

#[derive(Args, Debug)]
struct EnrollArgs {
    /// Controller base URL, e.g. https://quiver.example.com.
    #[arg(long)]
    server: String,
    /// One-time enrollment token.
    #[arg(long, env = "QUIVER_ENROLL_TOKEN", hide_env_values = true)]
    token: String,
    /// This device's id (1-128 of A-Z a-z 0-9 - _ .).
    #[arg(long)]
    device_id: String,
    /// A label for group targeting, k=v (repeatable).
    #[arg(long = "label", value_parser = key_value)]
    labels: Vec<(String, String)>,
    /// Platform [default: this OS].
    #[arg(long, value_parser = platform)]
    platform: Option<Platform>,
    /// The controller's public key, obtained out of band (base64 line or .pub file path).
    /// It is compared with the key the controller presents before the token is sent;
    /// enrollment is refused if they differ.
    #[arg(long)]
    public_key: Option<String>,
    /// Fetch snapshots from this URL (a mirror of the publish directory) instead of
    /// <server>/v1/.
    #[arg(long)]
    snapshot_url: Option<String>,
    /// Replace this state directory's enrollment. The controller still refuses a device id
    /// that is enrolled and not revoked: revoke it first (`quiver agents revoke ID`).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    net: NetArgs,
}

#[derive(Args, Debug)]
struct SyncArgs {
    /// Older snapshots to keep besides the current one.
    #[arg(long, default_value_t = 3)]
    keep: usize,
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    net: NetArgs,
}

#[derive(Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Script name.
    script: String,
    /// A parameter, name=value (repeatable).
    #[arg(long = "param", value_parser = key_value)]
    params: Vec<(String, String)>,
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    net: NetArgs,
}

#[derive(Args, Debug)]
struct DaemonArgs {
    /// Older snapshots to keep besides the current one.
    #[arg(long, default_value_t = 3)]
    keep: usize,
    /// Scripts running at once.
    #[arg(long, default_value_t = 2)]
    max_runs: usize,
    /// How long each poll waits at the controller.
    #[arg(long, default_value = "30s", value_parser = duration)]
    poll_wait: Duration,
    /// Full sync at least this often.
    #[arg(long, default_value = "15m", value_parser = duration)]
    full_sync_every: Duration,
    /// Time running scripts get to finish at shutdown before they are killed.
    #[arg(long, default_value = "10s", value_parser = duration)]
    shutdown_grace: Duration,
    /// Longest wait between retries after network errors.
    #[arg(long, default_value = "60s", value_parser = duration)]
    backoff_cap: Duration,
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    net: NetArgs,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 500ms, 30s, 15m)"))
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not name=value")),
    }
}

fn platform(s: &str) -> Result<Platform, String> {
    serde_json::from_value(json!(s)).map_err(|_| format!("{s:?}: use windows, macos or linux"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Daemon(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUIVER_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let code = match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            e.downcast_ref::<Error>()
                .map_or(exit::FAILURE, Error::exit_code)
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn dispatch(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Enroll(a) => cmd_enroll(a),
        Command::Sync(a) => cmd_sync(a),
        Command::List(a) => cmd_list(a),
        Command::Run(a) => cmd_run(a),
        Command::Daemon(a) => cmd_daemon(a),
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn cmd_enroll(a: EnrollArgs) -> anyhow::Result<i32> {
    let platform = match a.platform.or_else(Platform::current) {
        Some(p) => p,
        None => {
            return Err(
                Error::Usage("this OS is not a quiver platform; pass --platform".into()).into(),
            );
        }
    };
    let opts = EnrollOptions {
        server: a.server,
        token: a.token,
        device_id: a.device_id,
        labels: a.labels.into_iter().collect(),
        platform,
        public_key: a.public_key,
        snapshot_url: a.snapshot_url,
        force: a.force,
    };
    let state = a.state.state();
    let done = enroll(&state, &opts, a.net.timeouts())?;
    if a.state.json {
        print_json(&json!({
            "agent_id": done.config.agent_id,
            "device_id": done.config.device_id,
            "server": done.config.server,
            "platform": done.config.platform,
            "labels": done.config.labels,
            "fingerprint": done.fingerprint,
            "pinned_out_of_band": done.pinned_out_of_band,
            "state_dir": state.root(),
        }));
    } else {
        println!(
            "enrolled as {} with {}",
            done.config.agent_id, done.config.server
        );
        println!("controller key fingerprint: {}", done.fingerprint);
        if done.pinned_out_of_band {
            println!("the key matches the one given with --public-key and is pinned");
        } else {
            println!(
                "pinned on first use: compare this fingerprint with the one your controller's \
                 operator gives you (out of band) before trusting this device's cache"
            );
        }
    }
    Ok(exit::OK)
}

fn open(state: &StateArgs, net: Option<NetArgs>) -> anyhow::Result<Agent> {
    let timeouts = net.map_or_else(Timeouts::default, |n| n.timeouts());
    Ok(Agent::open(state.state(), timeouts)?)
}

fn cmd_sync(a: SyncArgs) -> anyhow::Result<i32> {
    let agent = open(&a.state, Some(a.net))?;
    let outcome = sync_and_checkin(&agent, &SyncOptions { keep: a.keep });
    let unauthorized = matches!(outcome.checkin_error, Some(Error::Unauthorized { .. }));
    if a.state.json {
        print_json(&json!({
            "ok": outcome.error.is_none(),
            "report": outcome.report,
            "problems": outcome.problems,
            "error": outcome.error.as_ref().map(|e| json!({"code": e.code(), "message": e.to_string()})),
            "checkin_error": outcome.checkin_error.as_ref().map(ToString::to_string),
        }));
    } else {
        if let Some(r) = &outcome.report {
            let serial = r.serial.map_or("none".into(), |s| s.to_string());
            if r.switched {
                println!(
                    "applied snapshot {serial} ({} scripts, {} blobs fetched)",
                    r.scripts, r.blobs_fetched
                );
            } else {
                println!("snapshot {serial} is current ({} scripts)", r.scripts);
            }
        }
        for p in &outcome.problems {
            eprintln!("problem [{}]: {}", p.code, p.message);
        }
        if let Some(e) = &outcome.checkin_error {
            eprintln!("warning: check-in failed: {e}");
        }
    }
    if unauthorized {
        return Ok(exit::UNAUTHORIZED);
    }
    Ok(outcome.error.as_ref().map_or(exit::OK, Error::exit_code))
}

fn cmd_list(a: ListArgs) -> anyhow::Result<i32> {
    let agent = open(&a.state, None)?;
    let snap = quiver_agent::cache::load_current(&agent.state, &agent.key, &agent.limits)?
        .ok_or_else(|| Error::NoSnapshot(agent.state.root().to_path_buf()))?;
    let entries = snap.entries(&agent.config);
    if a.state.json {
        let scripts: Vec<_> = entries
            .iter()
            .map(|e| {
                json!({
                    "name": e.script,
                    "version": e.version,
                    "description": e.description,
                    "risk": e.risk,
                    "platforms": e.platforms.keys().collect::<Vec<_>>(),
                    "parameters": e.parameters,
                    "timeout_secs": e.timeout_secs,
                })
            })
            .collect();
        print_json(&json!({"serial": snap.pointer.serial, "scripts": scripts}));
        return Ok(exit::OK);
    }
    println!("snapshot {}", snap.pointer.serial);
    for e in entries {
        let platforms: Vec<String> = e.platforms.keys().map(ToString::to_string).collect();
        let params: Vec<String> = e
            .parameters
            .iter()
            .map(|p| {
                let mut s = format!("{}:{}", p.name, p.r#type);
                if p.required && p.default.is_none() {
                    s.push('!');
                } else if let Some(d) = &p.default {
                    s.push_str(&format!("={d}"));
                }
                s
            })
            .collect();
        println!(
            "{}  v{}  [{}]  {}  {}",
            e.script,
            e.version,
            platforms.join(","),
            params.join(" "),
            e.description
        );
    }
    Ok(exit::OK)
}

fn cmd_run(a: RunArgs) -> anyhow::Result<i32> {
    let agent = open(&a.state, Some(a.net))?;
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in a.params {
        // A parameter given twice is a typo, not an override: refuse rather than pick one.
        if params.contains_key(&k) {
            anyhow::bail!("--param {k} is given more than once; give each parameter once");
        }
        params.insert(k, v);
    }
    let done = quiver_agent::run::local(&agent, &a.script, &params)
        .with_context(|| format!("cannot run {}", a.script))?;
    let r = &done.result;
    if a.state.json {
        print_json(&json!({
            "run_id": done.run_id,
            "script": done.invocation.script,
            "version": done.invocation.version,
            "result": r,
            "reported": done.reported.as_ref().err().map(ToString::to_string).map_or(json!(true), |e| json!({"error": e})),
        }));
    } else {
        print!("{}", r.stdout_tail);
        eprint!("{}", r.stderr_tail);
        if r.truncated {
            eprintln!(
                "(output truncated to the last {} bytes per stream; {} bytes in all, sha256 {})",
                done.invocation.output_limit, r.output_bytes, r.output_sha256
            );
        }
        if r.timed_out {
            eprintln!(
                "error: timed out after {} s; the script's process tree was killed",
                done.invocation.timeout.as_secs()
            );
        }
        if let Some(e) = &r.error {
            eprintln!("error: {e}");
        }
        if let Err(e) = &done.reported {
            eprintln!("warning: the run could not be reported to the controller: {e}");
        }
    }
    // The script's own exit code, so `run` composes in operator scripts; 124 for a timeout
    // (as timeout(1)), 125 when it did not start or did not exit normally.
    Ok(match (r.timed_out, r.exit_code) {
        (true, _) => exit::RUN_TIMED_OUT,
        (false, Some(c)) => c.clamp(0, 255),
        (false, None) => exit::RUN_NOT_STARTED,
    })
}

fn cmd_daemon(a: DaemonArgs) -> anyhow::Result<i32> {
    let agent = open(&a.state, Some(a.net))?;
    let opts = DaemonOptions {
        sync: SyncOptions { keep: a.keep },
        max_runs: a.max_runs.max(1),
        poll_wait: a.poll_wait,
        full_sync_every: a.full_sync_every,
        shutdown_grace: a.shutdown_grace,
        backoff_cap: a.backoff_cap,
    };
    tracing::info!(agent = %agent.config.agent_id, server = %agent.config.server, "starting");
    let (daemon, handle) = Daemon::new(agent, opts);
    shutdown_on_signals(handle)?;
    match daemon.run() {
        Ok(()) => Ok(exit::OK),
        Err(e @ Error::Unauthorized { .. }) => {
            tracing::error!(
                "the controller refused this agent's token: it was revoked (or never valid); stopping. Enroll again to resume. ({e})"
            );
            Ok(exit::UNAUTHORIZED)
        }
        Err(e) => Err(e.into()),
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
