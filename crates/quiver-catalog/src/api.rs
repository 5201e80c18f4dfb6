//! JSON bodies of the controller's HTTP API, shared by the controller, the agent and the CLI.
//!
//! Unlike the signed documents these are not strict: unknown fields are ignored and missing
//! lists default to empty, so a newer agent can talk to an older controller and the reverse.
//! Times are RFC 3339 strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::catalog::Platform;
use crate::path::{ScriptName, Sha256Hex};

/// `POST /v1/enroll`: an endpoint trades a one-time token for its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// One-time enrollment token.
    pub token: String,
    /// Stable device identifier.
    pub device_id: String,
    /// The device's platform.
    pub platform: Platform,
    /// Labels used for group targeting.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Host name, for operators.
    pub hostname: Option<String>,
}

/// Answer to [`EnrollRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// Id the agent uses in URLs.
    pub agent_id: String,
    /// Bearer token for later calls.
    pub agent_token: String,
    /// The controller's minisign public key (base64 line) to pin.
    pub public_key: String,
    /// Its key id, for operators to compare out of band.
    pub fingerprint: String,
}

/// `GET /v1/key`: the controller's public key, fetched by an agent given `--public-key` so it
/// can compare the two before it presents its enrollment token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyResponse {
    /// The controller's minisign public key (base64 line).
    pub public_key: String,
    /// Its key id, as `quiver keygen` prints it.
    pub fingerprint: String,
}

/// `POST /v1/agents/{id}/checkin`: what the agent has and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinRequest {
    /// The device's platform.
    pub platform: Platform,
    /// Current labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Serial of the snapshot in use, if any.
    pub applied_serial: Option<u64>,
    /// Scripts in the active cache.
    #[serde(default)]
    pub scripts: Vec<CachedScript>,
    /// Problems since the last check-in.
    #[serde(default)]
    pub errors: Vec<SyncProblem>,
    /// Agent build version.
    pub agent_version: String,
}

/// A script version in the agent's cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedScript {
    /// Script name.
    pub name: ScriptName,
    /// Cached version.
    pub version: u32,
}

/// A sync or verification failure reported by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProblem {
    /// Stable code, e.g. [`VerifyError::reason_code`](crate::VerifyError::reason_code).
    pub code: String,
    /// Human-readable detail.
    pub message: String,
}

/// Answer to [`CheckinRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinResponse {
    /// The check-in was recorded.
    pub ok: bool,
}

/// `GET /v1/agents/{id}/poll?after=SERIAL&wait=30s`: a long poll for news.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollResponse {
    /// Latest published serial, if newer than `after`.
    pub serial: Option<u64>,
    /// Runs for this agent to execute.
    #[serde(default)]
    pub runs: Vec<RunAssignment>,
}

/// A run dispatched to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAssignment {
    /// Run id, used when reporting the result.
    pub run_id: String,
    /// Script to run from the cache.
    pub script: ScriptName,
    /// Version the controller expects the cache to hold.
    pub version: u32,
    /// Parameter values (checked again by the agent against its catalog).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Who asked, for the endpoint's local log.
    pub requested_by: String,
}

/// `POST /v1/runs`: an analyst asks for a script to run on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    /// Device id.
    pub device: String,
    /// Script name.
    pub script: String,
    /// Parameter values.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, not yet handed to the agent.
    Pending,
    /// Handed to the agent.
    Dispatched,
    /// The agent reported it started.
    Running,
    /// Exit code 0.
    Succeeded,
    /// Non-zero exit code.
    Failed,
    /// Killed at its timeout.
    TimedOut,
    /// Refused (role, parameters, or the agent's own checks).
    Refused,
    /// Could not be run (missing interpreter, cache problem…).
    Error,
}

/// A run as recorded by the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id.
    pub id: String,
    /// Device id.
    pub device: String,
    /// Script name as requested.
    pub script: String,
    /// Version dispatched, once known.
    pub version: Option<u32>,
    /// Parameter values.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Who asked.
    pub requested_by: String,
    /// Current status.
    pub status: RunStatus,
    /// When it was asked for.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// When it ended.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The agent's report.
    pub result: Option<RunResult>,
}

/// What the agent reports after a run (`POST /v1/agents/{id}/runs/{run_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    /// Exit code, if the process exited normally.
    pub exit_code: Option<i32>,
    /// Wall-clock duration.
    pub duration_ms: u64,
    /// Killed at the timeout.
    pub timed_out: bool,
    /// Last part of stdout.
    pub stdout_tail: String,
    /// Last part of stderr.
    pub stderr_tail: String,
    /// Output exceeded the entry's `output_limit`.
    pub truncated: bool,
    /// Digest of the captured output.
    pub output_sha256: Sha256Hex,
    /// Total output bytes produced.
    pub output_bytes: u64,
    /// Why the run could not happen, if it could not.
    pub error: Option<String>,
}

impl RunResult {
    /// The result of a run that never started (refused, expired, closed), with why: no
    /// exit code, no output (the digest of nothing), no time spent.
    pub fn not_run(error: impl Into<String>) -> RunResult {
        RunResult {
            exit_code: None,
            duration_ms: 0,
            timed_out: false,
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            truncated: false,
            output_sha256: crate::layout::sha256_hex(b""),
            output_bytes: 0,
            error: Some(error.into()),
        }
    }
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
    /// A stable reason code, when there is one.
    pub reason: Option<String>,
}
