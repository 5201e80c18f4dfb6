//! `quiver run`: ask the controller to run a library script on a device, optionally wait
//! for the result. The controller checks the member's role against the policy in effect
//! before anything is dispatched; the exit code mirrors the script's success with `--wait`.

use anyhow::{Context, Result, bail};
use quiver_catalog::api::{RunRecord, RunRequest, RunStatus};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where the controller is and who is asking.
#[derive(clap::Args, Debug, Clone)]
pub struct Server {
    /// The controller's URL, e.g. https://quiver.example.org.
    #[arg(long, env = "QUIVER_SERVER")]
    pub server: String,
    /// Member token (`quiver token create --member`), or QUIVER_TOKEN.
    #[arg(long, env = "QUIVER_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// Arguments of `quiver run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub server: Server,
    /// Device (agent) id.
    #[arg(long)]
    pub device: String,
    /// Script name.
    pub script: String,
    /// Parameter, `name=value` (repeatable); checked against the script's declared types.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Wait for the result and print the exit code and output tail.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The HTTP client used by the analyst commands (rustls, sane timeouts).
pub fn client() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("quiver/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// The `error` of an API error body, or the body itself.
pub fn error_text(body: &str) -> String {
    serde_json::from_str::<quiver_catalog::api::ApiError>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| body.trim().to_string())
}

/// The status as the API spells it (`succeeded`, `timed_out`, …).
pub fn status_name(s: RunStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn finished(s: RunStatus) -> bool {
    !matches!(
        s,
        RunStatus::Pending | RunStatus::Dispatched | RunStatus::Running
    )
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut params = BTreeMap::new();
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--param {p:?}: write NAME=VALUE"))?;
        // A parameter given twice is a typo, not an override: refuse rather than pick one.
        if params.insert(k.to_string(), v.to_string()).is_some() {
            anyhow::bail!("--param {k} is given more than once; give each parameter once");
        }
    }
    let client = client()?;
    let base = args.server.server.trim_end_matches('/');
    let req = RunRequest {
        device: args.device.clone(),
        script: args.script.clone(),
        params,
    };
    let resp = client
        .post(format!("{base}/v1/runs"))
        .bearer_auth(&args.server.token)
        .json(&req)
        .send()
        .with_context(|| format!("POST {base}/v1/runs"))?;
    let status = resp.status();
    let body = resp.text()?;
    if !status.is_success() {
        bail!("{status}: {}", error_text(&body));
    }
    let mut run: RunRecord = serde_json::from_str(&body).context("reading the run record")?;
    if !args.wait {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&run)?);
        } else {
            println!("{}", run.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("run {} requested; waiting for {}", run.id, args.device);
    let deadline = Instant::now() + args.timeout;
    let mut delay = Duration::from_millis(250);
    while !finished(run.status) {
        if Instant::now() > deadline {
            let what_next = if run.status == RunStatus::Pending {
                format!(
                    "it is still queued: it runs if {} polls within 10 minutes of the request, and expires otherwise",
                    args.device
                )
            } else {
                "the device has it; `quiver runs list` shows its result when it reports".to_string()
            };
            bail!(
                "run {} did not finish within {} (status {}); {what_next}",
                run.id,
                humantime::format_duration(args.timeout),
                status_name(run.status)
            );
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(3));
        let resp = client
            .get(format!("{base}/v1/runs/{}", run.id))
            .bearer_auth(&args.server.token)
            .send()?;
        let status = resp.status();
        let body = resp.text()?;
        if !status.is_success() {
            bail!("{status}: {}", error_text(&body));
        }
        run = serde_json::from_str(&body)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        let r = run.result.as_ref();
        println!(
            "run {}: {}, exit code {}",
            run.id,
            status_name(run.status),
            r.and_then(|r| r.exit_code)
                .map_or("none".into(), |c| c.to_string())
        );
        if let Some(r) = r {
            if !r.stdout_tail.is_empty() {
                println!("--- stdout (tail) ---\n{}", r.stdout_tail.trim_end());
            }
            if !r.stderr_tail.is_empty() {
                println!("--- stderr (tail) ---\n{}", r.stderr_tail.trim_end());
            }
            if let Some(e) = &r.error {
                println!("error: {e}");
            }
        }
    }
    Ok(if run.status == RunStatus::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
