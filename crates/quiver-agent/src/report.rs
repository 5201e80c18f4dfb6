//! Talking back to the controller: check-ins (what the agent has, what went wrong), run
//! results, operator runs, and the long poll for news.
//!
//! Problems are kept in `problems.json` until a check-in has delivered them, so a sync that
//! fails while the controller is unreachable is still reported later.

use std::collections::BTreeMap;
use std::time::Duration;

use quiver_catalog::api::{
    CachedScript, CheckinRequest, CheckinResponse, PollResponse, RunResult, SyncProblem,
};
use reqwest::Method;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::Agent;
use crate::cache::load_current;
use crate::config::StateDir;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::sync::{SyncOptions, SyncReport, sync};

/// At most this many unreported problems are kept (the newest).
const MAX_PENDING: usize = 100;

/// `POST /v1/agents/{id}/runs`: a run an operator started on the device itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRunReport {
    /// Script name.
    pub script: String,
    /// Version run.
    pub version: u32,
    /// Parameter values as given (before defaults).
    pub params: BTreeMap<String, String>,
    /// What happened.
    pub result: RunResult,
    /// `local:<os user>`.
    pub requested_by: String,
}

/// Sends a check-in with the current snapshot's serial and scripts and these problems.
pub fn checkin(agent: &Agent, problems: Vec<SyncProblem>) -> Result<CheckinResponse> {
    let state = &agent.state;
    let applied_serial = state.load_pointer().ok().flatten().map(|p| p.serial);
    let scripts = match load_current(state, &agent.key, &agent.limits) {
        Ok(Some(snap)) => snap
            .entries(&agent.config)
            .into_iter()
            .map(|e| CachedScript {
                name: e.script.clone(),
                version: e.version,
            })
            .collect(),
        _ => Vec::new(),
    };
    let body = CheckinRequest {
        platform: agent.config.platform,
        labels: agent.config.labels.clone(),
        applied_serial,
        scripts,
        errors: problems,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let url = format!(
        "{}agents/{}/checkin",
        agent.config.api_base(),
        agent.config.agent_id
    );
    agent.http.api(
        Method::POST,
        &url,
        Some(&agent.config.agent_token),
        Some(&body),
        None,
    )
}

/// `POST /v1/runs/{run_id}/result`.
pub fn post_result(agent: &Agent, run_id: &str, result: &RunResult) -> Result<()> {
    crate::config::check_id("run id", run_id)?;
    let url = format!("{}runs/{run_id}/result", agent.config.api_base());
    agent.http.api::<_, IgnoredAny>(
        Method::POST,
        &url,
        Some(&agent.config.agent_token),
        Some(result),
        None,
    )?;
    Ok(())
}

/// `POST /v1/agents/{id}/runs`: reports an operator's local run.
pub fn post_local_run(agent: &Agent, report: &LocalRunReport) -> Result<()> {
    let url = format!(
        "{}agents/{}/runs",
        agent.config.api_base(),
        agent.config.agent_id
    );
    agent.http.api::<_, IgnoredAny>(
        Method::POST,
        &url,
        Some(&agent.config.agent_token),
        Some(report),
        None,
    )?;
    Ok(())
}

/// `GET /v1/agents/{id}/poll?after=SERIAL&wait=Ns`: waits up to `wait` for a newer serial or
/// runs for this agent.
pub fn poll(agent: &Agent, after: u64, wait: Duration) -> Result<PollResponse> {
    let url = format!(
        "{}agents/{}/poll?after={after}&wait={}s",
        agent.config.api_base(),
        agent.config.agent_id,
        wait.as_secs()
    );
    let timeout = wait + agent.http.timeouts().request.min(Duration::from_secs(30));
    agent.http.api::<(), _>(
        Method::GET,
        &url,
        Some(&agent.config.agent_token),
        None,
        Some(timeout),
    )
}

/// Problems not yet delivered by a check-in.
pub fn load_pending(state: &StateDir) -> Vec<SyncProblem> {
    std::fs::read(state.problems_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_pending(state: &StateDir, problems: &[SyncProblem]) -> Result<()> {
    let start = problems.len().saturating_sub(MAX_PENDING);
    let bytes =
        serde_json::to_vec(&problems[start..]).map_err(|e| Error::invalid("problems", e))?;
    fsutil::write_atomic(&state.problems_file(), &bytes, 0o644)
}

fn clear_pending(state: &StateDir) -> Result<()> {
    // Removing only when present: a warm sync must not touch the disk.
    if state.problems_file().exists() {
        fsutil::remove_any(&state.problems_file())?;
    }
    Ok(())
}

/// The outcome of [`sync_and_checkin`].
#[derive(Debug)]
pub struct SyncOutcome {
    /// What the sync did, if it succeeded.
    pub report: Option<SyncReport>,
    /// Why it failed, if it did (`current` is untouched then).
    pub error: Option<Error>,
    /// Problems found by this sync (including the failure).
    pub problems: Vec<SyncProblem>,
    /// Why the check-in failed, if it did (problems are kept for the next one).
    pub checkin_error: Option<Error>,
}

/// One sync followed by a check-in carrying its problems and any earlier undelivered ones.
pub fn sync_and_checkin(agent: &Agent, opts: &SyncOptions) -> SyncOutcome {
    let mut problems = Vec::new();
    let (report, error) = match sync(agent, opts, &mut problems) {
        Ok(r) => (Some(r), None),
        Err(e) => {
            tracing::warn!(code = e.code(), "sync failed: {e}");
            problems.push(SyncProblem {
                code: e.code().to_owned(),
                message: e.to_string(),
            });
            (None, Some(e))
        }
    };
    let mut pending = load_pending(&agent.state);
    pending.extend(problems.iter().cloned());
    let checkin_error = match checkin(agent, pending.clone()) {
        Ok(_) => clear_pending(&agent.state).err(),
        Err(e) => {
            tracing::warn!("check-in failed: {e}");
            if !problems.is_empty()
                && let Err(save) = save_pending(&agent.state, &pending)
            {
                tracing::warn!("cannot keep problems for the next check-in: {save}");
            }
            Some(e)
        }
    };
    SyncOutcome {
        report,
        error,
        problems,
        checkin_error,
    }
}
