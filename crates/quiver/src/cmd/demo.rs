//! `quiver demo`: the whole flow on the example library, on this machine, in one command.
//!
//! It writes a library repository with a believable history (pull requests with approvals,
//! a direct push, a refused script, a high-risk script, a rename), starts a real controller
//! process on 127.0.0.1, enrolls three endpoint agents (linux, windows, macos) with caches
//! under the demo folder, waits until each has synced, runs a Linux triage script remotely
//! as an analyst, shows a refused run, and summarises what is where.

mod history;

use anyhow::{Context, Result, bail};
use quiver_agent::config::StateDir;
use quiver_agent::daemon::{Daemon, DaemonOptions, ShutdownHandle};
use quiver_agent::enroll::{EnrollOptions, enroll};
use quiver_agent::fetch::Timeouts;
use quiver_catalog::{KeyPair, Limits, Platform};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Marks a folder as made by `quiver demo`, so a later demo may replace it.
const MARKER: &str = ".quiver-demo";

/// Arguments of `quiver demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder for the demo (repository, controller, endpoint caches). Refused if it
    /// exists and was not made by an earlier demo.
    #[arg(long, default_value = "quiver-demo")]
    pub dir: PathBuf,
    /// Leave the controller and agents running until ctrl-c.
    #[arg(long)]
    pub keep_running: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Project folder holding `example-library/` and `policies/` (default: the current
    /// folder if it has them, else the source tree this binary was built from).
    #[arg(long)]
    pub project: Option<PathBuf>,
}

/// The endpoints the demo enrolls: (device id, platform).
const ENDPOINTS: [(&str, Platform); 3] = [
    ("linux-01", Platform::Linux),
    ("windows-01", Platform::Windows),
    ("macos-01", Platform::Macos),
];
/// The analyst who may run low-risk scripts, and the auditor who may run nothing.
const ANALYST: &str = "jpark";
const AUDITOR: &str = "rabernathy";
/// The script run remotely on the linux endpoint.
const RUN_SCRIPT: &str = "process-list";

struct Progress {
    quiet: bool,
    started: Instant,
    step: usize,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.step += 1;
        if !self.quiet {
            eprintln!(
                "[{:>4.1}s] {}. {what}",
                self.started.elapsed().as_secs_f64(),
                self.step
            );
        }
    }
}

/// Running parts, stopped on drop unless kept.
struct Running {
    controller: Option<Child>,
    agents: Vec<(ShutdownHandle, std::thread::JoinHandle<()>)>,
}

impl Running {
    fn stop(&mut self) {
        for (h, _) in &self.agents {
            h.shutdown();
        }
        for (_, t) in self.agents.drain(..) {
            let _ = t.join();
        }
        if let Some(mut child) = self.controller.take() {
            terminate(&mut child);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asks the controller to drain and exit (SIGTERM), then waits; kills it after 10 s.
fn terminate(child: &mut Child) {
    #[cfg(unix)]
    {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn project_dir(given: Option<&Path>) -> Result<PathBuf> {
    let has = |p: &Path| p.join("example-library").is_dir() && p.join("policies").is_dir();
    if let Some(p) = given {
        if has(p) {
            return Ok(p.to_path_buf());
        }
        bail!(
            "{} has no example-library/ and policies/ folders",
            p.display()
        );
    }
    let cwd = std::env::current_dir()?;
    if has(&cwd) {
        return Ok(cwd);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if has(&built) {
        return Ok(built);
    }
    bail!(
        "cannot find example-library/ and policies/; run from the quiver project folder or pass --project"
    )
}

fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.join(MARKER).is_file() {
            bail!(
                "{} exists and is not an earlier demo (no {MARKER} in it); choose another --dir or remove it",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the earlier demo at {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "made by `quiver demo`; safe to delete\n")?;
    Ok(())
}

fn free_port() -> Result<u16> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

fn quiver(args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe().context("locating the quiver binary")?;
    let out = Command::new(exe).args(args).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!(
            "quiver {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {}s waiting for {what}", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<ExitCode> {
    let mut p = Progress {
        quiet: false,
        started: Instant::now(),
        step: 0,
    };
    let project = project_dir(args.project.as_deref())?;
    let dir = &args.dir;
    prepare_dir(dir)?;
    let dir = dir.canonicalize()?;

    p.step("Writing the library repository (pull requests, approvals, a direct push, a refused script)");
    let repo = dir.join("repo");
    let story = history::write(
        &repo,
        &project.join("example-library"),
        &project.join("policies"),
    )?;

    p.step("Writing the controller's signing key and configuration");
    let cdir = dir.join("controller");
    std::fs::create_dir_all(&cdir)?;
    let keys = KeyPair::generate()?;
    keys.write(&cdir.join("quiver.key"), &cdir.join("quiver.pub"))?;
    let port = free_port()?;
    let api = format!("http://127.0.0.1:{port}");
    let config = cdir.join("quiver.toml");
    std::fs::write(
        &config,
        format!(
            "# Written by `quiver demo`. See docs/configuration.md.\n\
             [repository]\npath = \"../repo\"\nbranch = \"main\"\nlibrary = \"library\"\npolicies = \"policies\"\n\n\
             [trust]\n# The first commit (policies only) is the trust anchor.\ncommit = \"{}\"\n\n\
             [signing]\nsecret_key = \"quiver.key\"\n\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [paths]\npublish_dir = \"publish\"\nstate_dir = \"state\"\n\n\
             [watch]\npoll_interval = \"60s\"\n",
            story.trust_commit
        ),
    )?;

    p.step(&format!("Starting the controller on {api}"));
    let log = std::fs::File::create(cdir.join("controller.log"))?;
    let child = Command::new(std::env::current_exe()?)
        .args(["controller", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .env(
            "QUIVER_LOG",
            std::env::var("QUIVER_LOG").unwrap_or_else(|_| "info".into()),
        )
        .spawn()
        .context("starting the controller")?;
    let mut running = Running {
        controller: Some(child),
        agents: Vec::new(),
    };
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    wait_until(
        "the controller to publish its first snapshot",
        Duration::from_secs(60),
        || {
            if let Some(c) = running.controller.as_mut()
                && let Some(status) = c.try_wait()?
            {
                let log = std::fs::read_to_string(cdir.join("controller.log")).unwrap_or_default();
                bail!("the controller exited ({status}); its log:\n{log}");
            }
            Ok(http
                .get(format!("{api}/readyz"))
                .send()
                .ok()
                .filter(|r| r.status().is_success()))
        },
    )?;

    p.step("Creating an enrollment token and analyst tokens");
    let cfg = config.to_string_lossy().into_owned();
    let enroll_token = quiver(&[
        "token",
        "create",
        "--config",
        &cfg,
        "--enroll",
        "--uses",
        "3",
        "--expires",
        "1h",
    ])?;
    let analyst_token = quiver(&["token", "create", "--config", &cfg, "--member", ANALYST])?;
    let auditor_token = quiver(&["token", "create", "--config", &cfg, "--member", AUDITOR])?;

    p.step("Enrolling three endpoints (linux, windows, macos) and starting their agents");
    let pubkey = cdir.join("quiver.pub").to_string_lossy().into_owned();
    for (name, platform) in ENDPOINTS {
        let state = StateDir::new(dir.join("endpoints").join(name));
        enroll(
            &state,
            &EnrollOptions {
                server: api.clone(),
                token: enroll_token.clone(),
                device_id: name.to_string(),
                labels: BTreeMap::from([
                    ("os".to_string(), platform.to_string()),
                    ("env".to_string(), "demo".to_string()),
                ]),
                platform,
                public_key: Some(pubkey.clone()),
                snapshot_url: None,
                force: false,
            },
            Timeouts::default(),
        )
        .with_context(|| format!("enrolling {name}"))?;
        let agent = quiver_agent::Agent::open(state, Timeouts::default())?;
        let opts = DaemonOptions {
            poll_wait: Duration::from_secs(10),
            ..DaemonOptions::default()
        };
        let (daemon, handle) = Daemon::new(agent, opts);
        let thread = std::thread::Builder::new()
            .name(format!("agent-{name}"))
            .spawn(move || {
                if let Err(e) = daemon.run() {
                    tracing::error!("agent stopped: {e}");
                }
            })?;
        running.agents.push((handle, thread));
    }

    p.step("Waiting until every endpoint has synced the published snapshot");
    let status = wait_until("every endpoint to sync", Duration::from_secs(60), || {
        let st: Value = match http
            .get(format!("{api}/v1/status"))
            .bearer_auth(&auditor_token)
            .send()
            .and_then(|r| r.json())
        {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        let serial = st["serial"].as_u64();
        let endpoints = st["endpoints"].as_array().cloned().unwrap_or_default();
        let synced = ENDPOINTS.iter().all(|(name, _)| {
            endpoints.iter().any(|e| {
                e["id"] == *name && e["applied_serial"].as_u64() == serial && serial.is_some()
            })
        });
        Ok(synced.then_some(st))
    })?;

    p.step(&format!(
        "Running {RUN_SCRIPT} on linux-01 as analyst `{ANALYST}`"
    ));
    let run = remote_run(
        &http,
        &api,
        &analyst_token,
        "linux-01",
        RUN_SCRIPT,
        &[("hash", "false")],
    )?;
    let run_id = run["id"]
        .as_str()
        .context("run id in the response")?
        .to_string();
    let finished = wait_until("the run to finish", Duration::from_secs(120), || {
        let r: Value = http
            .get(format!("{api}/v1/runs/{run_id}"))
            .bearer_auth(&analyst_token)
            .send()?
            .json()?;
        let done = !matches!(
            r["status"].as_str(),
            Some("pending" | "dispatched" | "running")
        );
        Ok(done.then_some(r))
    })?;

    p.step(&format!(
        "Trying the same run as auditor `{AUDITOR}` (no execute permission)"
    ));
    let refused = http
        .post(format!("{api}/v1/runs"))
        .bearer_auth(&auditor_token)
        .json(&json!({"device": "linux-01", "script": RUN_SCRIPT, "params": {}}))
        .send()?;
    let refused_status = refused.status().as_u16();
    let refused_body: Value = refused.json().unwrap_or(Value::Null);

    p.step("Verifying the audit log");
    let audit_path = cdir.join("state").join("audit.jsonl");
    let audit = quiver_controller::audit::verify(&audit_path);
    let (audit_records, audit_ok, audit_error) = match &audit {
        Ok(v) => (v.records, true, None),
        Err(e) => (count_lines(&audit_path), false, Some(e.to_string())),
    };

    // Endpoint caches as the agents hold them.
    let mut endpoints = Vec::new();
    for (name, platform) in ENDPOINTS {
        let state = StateDir::new(dir.join("endpoints").join(name));
        let agent = quiver_agent::Agent::open(state.clone(), Timeouts::default())?;
        let snap = quiver_agent::cache::load_current(&state, &agent.key, &Limits::default())?
            .with_context(|| format!("{name} has no current snapshot"))?;
        let scripts: Vec<Value> = snap
            .entries(&agent.config)
            .iter()
            .map(|e| json!({"name": e.script.as_str(), "version": e.version}))
            .collect();
        endpoints.push(json!({
            "name": name,
            "platform": platform.to_string(),
            "serial": snap.pointer.serial,
            "cache": state.root().display().to_string(),
            "scripts": scripts,
        }));
    }

    let scripts: Vec<Value> = status["scripts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| json!({"name": s["name"], "version": s["version"], "state": s["state"], "reason": s["reason"], "commit": s["commit"]}))
        .collect();
    let result = &finished["result"];
    let summary = json!({
        "repo": repo.display().to_string(),
        "api": api,
        "serial": status["serial"],
        "scripts": scripts,
        "endpoints": endpoints,
        "runs": [
            {"script": RUN_SCRIPT, "endpoint": "linux-01", "requested_by": ANALYST,
             "status": finished["status"], "exit_code": result["exit_code"],
             "output_head": head(result["stdout_tail"].as_str().unwrap_or(""), 6)},
            {"script": RUN_SCRIPT, "endpoint": "linux-01", "requested_by": AUDITOR,
             "status": if refused_status == 403 { "refused".to_string() } else { format!("http {refused_status}") },
             "exit_code": Value::Null, "reason": refused_body.get("error").cloned().unwrap_or(Value::Null)},
        ],
        "audit": {"records": audit_records, "verified": audit_ok, "error": audit_error, "path": audit_path.display().to_string()},
        "story": {"drifted": story.drifted, "refused": story.refused, "high_risk": story.high_risk,
                  "renamed": {"from": story.renamed.0, "to": story.renamed.1}, "updated": story.updated},
    });

    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary, &dir, &cdir, args.keep_running);
    }
    eprintln!("[{:>4.1}s] done", p.started.elapsed().as_secs_f64());

    if args.keep_running {
        if !args.json {
            println!();
            println!(
                "The controller ({api}) and the three agents keep running; press ctrl-c to stop them."
            );
            println!(
                "Try:  QUIVER_TOKEN={analyst_token} quiver run --server {api} --device linux-01 user-logons --wait"
            );
        }
        std::io::stdout().flush()?;
        wait_for_ctrl_c()?;
    }
    running.stop();
    let ok = audit_ok && refused_status == 403 && finished["status"] == "succeeded";
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn remote_run(
    http: &reqwest::blocking::Client,
    api: &str,
    token: &str,
    device: &str,
    script: &str,
    params: &[(&str, &str)],
) -> Result<Value> {
    let params: BTreeMap<&str, &str> = params.iter().copied().collect();
    let resp = http
        .post(format!("{api}/v1/runs"))
        .bearer_auth(token)
        .json(&json!({"device": device, "script": script, "params": params}))
        .send()?;
    let status = resp.status();
    let body: Value = resp.json().unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("the run request was answered {status}: {body}");
    }
    Ok(body)
}

fn head(text: &str, lines: usize) -> Vec<String> {
    text.lines()
        .take(lines)
        .map(|l| l.chars().take(160).collect())
        .collect()
}

fn count_lines(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count() as u64)
        .unwrap_or(0)
}

fn wait_for_ctrl_c() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    Ok(())
}

fn print_summary(s: &Value, dir: &Path, cdir: &Path, keep_running: bool) {
    let bold = |t: &str| {
        if std::io::stdout().is_terminal() {
            format!("\x1b[1m{t}\x1b[0m")
        } else {
            t.to_string()
        }
    };
    let endpoints = s["endpoints"].as_array().cloned().unwrap_or_default();
    let scripts = s["scripts"].as_array().cloned().unwrap_or_default();
    println!();
    println!(
        "{}",
        bold(&format!(
            "Library at serial {} — scripts × endpoints (cached version)",
            s["serial"]
        ))
    );
    let mut header = format!("{:<22} {:<9} {:>8}", "script", "state", "approved");
    for e in &endpoints {
        header.push_str(&format!(" {:>11}", e["name"].as_str().unwrap_or("")));
    }
    println!("{header}");
    for sc in &scripts {
        let name = sc["name"].as_str().unwrap_or("");
        let version = sc["version"]
            .as_u64()
            .map(|v| format!("v{v}"))
            .unwrap_or_else(|| "-".into());
        let mut line = format!(
            "{:<22} {:<9} {:>8}",
            name,
            sc["state"].as_str().unwrap_or(""),
            version
        );
        for e in &endpoints {
            let cached = e["scripts"]
                .as_array()
                .and_then(|l| l.iter().find(|x| x["name"] == name))
                .and_then(|x| x["version"].as_u64())
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "·".into());
            line.push_str(&format!(" {cached:>11}"));
        }
        println!("{line}");
    }
    println!("(· = not staged there: no entry for that platform, or not deployable)");
    println!();
    println!("{}", bold("Not (or not newly) deployed, and why"));
    for sc in scripts.iter().filter(|x| x["state"] != "approved") {
        println!(
            "  {:<20} {:<8} {}",
            sc["name"].as_str().unwrap_or(""),
            sc["state"].as_str().unwrap_or(""),
            sc["reason"].as_str().unwrap_or("")
        );
    }
    println!();
    let story = &s["story"];
    println!(
        "{}",
        bold("What the history shows (git log --graph in the repository)")
    );
    println!(
        "  {} is high-risk: its pull request needed two approvals (Approved-by: trailers of two leads)",
        story["high_risk"].as_str().unwrap_or("")
    );
    println!(
        "  {} was renamed from {} by a pull request and kept its versions",
        story["renamed"]["to"].as_str().unwrap_or(""),
        story["renamed"]["from"].as_str().unwrap_or("")
    );
    println!(
        "  {} got a second approved version; {} was changed by a direct push; {} was refused by the scanner",
        story["updated"].as_str().unwrap_or(""),
        story["drifted"].as_str().unwrap_or(""),
        story["refused"].as_str().unwrap_or("")
    );
    println!();
    println!("{}", bold("Runs"));
    for r in s["runs"].as_array().cloned().unwrap_or_default() {
        println!(
            "  {} on {} by {}: {}{}",
            r["script"].as_str().unwrap_or(""),
            r["endpoint"].as_str().unwrap_or(""),
            r["requested_by"].as_str().unwrap_or(""),
            r["status"].as_str().unwrap_or(""),
            r["exit_code"]
                .as_i64()
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default()
        );
        for l in r["output_head"].as_array().cloned().unwrap_or_default() {
            println!("      | {}", l.as_str().unwrap_or(""));
        }
        if let Some(reason) = r["reason"].as_str() {
            println!("      reason: {reason}");
        }
    }
    println!();
    let a = &s["audit"];
    println!(
        "{} {} records, verify: {}",
        bold("Audit log:"),
        a["records"],
        if a["verified"] == true {
            "OK".to_string()
        } else {
            format!("FAILED ({})", a["error"])
        }
    );
    println!();
    println!("{}", bold("Where everything is"));
    println!("  repository     {}", s["repo"].as_str().unwrap_or(""));
    println!(
        "  controller     {} (config, key, state, publish dir, controller.log)",
        cdir.display()
    );
    println!("  audit log      {}", a["path"].as_str().unwrap_or(""));
    println!("  endpoints      {}", dir.join("endpoints").display());
    println!(
        "  API            {}{}",
        s["api"].as_str().unwrap_or(""),
        if keep_running {
            ""
        } else {
            " (stopped with the demo; --keep-running leaves it up)"
        }
    );
}
