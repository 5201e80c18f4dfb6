//! The HTTP API (axum). `docs/api.md` documents every endpoint.
//!
//! Three kinds of callers, three kinds of credentials:
//! - anyone: the snapshot (`/v1/catalog.json`, `/v1/timestamp.json`, signatures, blobs) —
//!   it is signed and may as well be served by a CDN — plus `/healthz`, `/readyz`, `/metrics`;
//! - agents: `Bearer` agent token from enrollment, only for their own id;
//! - members: `Bearer` member token (`quiver token create --member`); what they may do is
//!   decided by the policy in effect at the time of the request.
//!
//! Bodies are capped, slow requests time out, long polls are bounded by a semaphore and
//! end early on shutdown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use quiver_catalog::api::{
    ApiError, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, KeyResponse,
    PollResponse, RunAssignment, RunRecord, RunRequest, RunResult, RunStatus,
};
use quiver_catalog::layout::{CATALOG_FILE, CATALOG_SIG_FILE, TIMESTAMP_FILE, TIMESTAMP_SIG_FILE};
use quiver_catalog::{Entry, ScriptName, sha256_hex};
use quiver_core::Policy;
use quiver_core::policy::{Member, Permission};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::audit::AuditEvent;
use crate::controller::{ReconcileReport, Shared};
use crate::reconcile::{core_platform, core_risk};
use crate::state::{EnrollRefusal, new_run_id, token_hash};
use crate::webhook::{self, Forge};

/// Longest a long poll waits, whatever the client asks.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

type S = State<Arc<Shared>>;

/// An error answer: status plus the [`ApiError`] body.
#[derive(Debug)]
pub struct Fail(StatusCode, ApiError);

impl Fail {
    fn new(status: StatusCode, error: impl Into<String>, reason: &str) -> Fail {
        Fail(
            status,
            ApiError {
                error: error.into(),
                reason: Some(reason.to_string()),
            },
        )
    }
    fn internal(e: impl std::fmt::Display) -> Fail {
        tracing::error!("internal error: {e}");
        Fail::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the controller log",
            "internal",
        )
    }
    fn unauthorized(msg: &str) -> Fail {
        Fail::new(StatusCode::UNAUTHORIZED, msg, "unauthorized")
    }
    fn bad_request(msg: impl Into<String>) -> Fail {
        Fail::new(StatusCode::BAD_REQUEST, msg, "bad_request")
    }
    fn not_found(msg: impl Into<String>) -> Fail {
        Fail::new(StatusCode::NOT_FOUND, msg, "not_found")
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

impl From<crate::state::StateError> for Fail {
    fn from(e: crate::state::StateError) -> Fail {
        Fail::internal(e)
    }
}

type Result<T> = std::result::Result<T, Fail>;

/// Builds the router.
///
/// The snapshot routes (documents, blobs, the catalog long poll) answer from memory without
/// reading a body; they carry no timeout or body layers (the long poll bounds itself) and
/// count their own metrics, because they are the hot path every endpoint hits. Everything
/// else gets the body cap, the body and request timeouts and the counting middleware.
pub fn router(shared: Arc<Shared>) -> Router {
    let cfg = &shared.config.server;
    let timeout = cfg.request_timeout;
    let max_body = usize::try_from(cfg.max_body).unwrap_or(usize::MAX);
    let snapshot = Router::new()
        .route(ROUTE_CATALOG, get(catalog))
        .route(ROUTE_CATALOG_SIG, get(catalog_sig))
        .route(ROUTE_TIMESTAMP, get(timestamp))
        .route(ROUTE_TIMESTAMP_SIG, get(timestamp_sig))
        .route(ROUTE_BLOB, get(blob));
    let long = Router::new()
        .route("/v1/agents/{id}/poll", get(poll))
        .route("/v1/reconcile", post(trigger_reconcile))
        .route("/v1/rewrite/ack", post(rewrite_ack))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            MAX_WAIT + timeout,
        ));
    let api = Router::new()
        .route("/v1/key", get(key))
        .route("/v1/enroll", post(enroll))
        .route("/v1/agents/{id}/checkin", post(checkin))
        .route("/v1/agents/{id}/runs", post(local_run))
        .route("/v1/agents/{id}/runs/{run}", post(agent_run_result))
        .route("/v1/runs", post(request_run).get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/result", post(run_result))
        .route("/v1/webhooks/{forge}", post(hook))
        .route("/v1/status", get(status))
        .route("/v1/audit", get(audit))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .merge(long)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            count_requests,
        ))
        .layer(RequestBodyTimeoutLayer::new(timeout))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(DefaultBodyLimit::max(max_body));
    snapshot.merge(api).fallback(not_found).with_state(shared)
}

const ROUTE_CATALOG: &str = "/v1/catalog.json";
const ROUTE_CATALOG_SIG: &str = "/v1/catalog.json.minisig";
const ROUTE_TIMESTAMP: &str = "/v1/timestamp.json";
const ROUTE_TIMESTAMP_SIG: &str = "/v1/timestamp.json.minisig";
const ROUTE_BLOB: &str = "/v1/blobs/sha256/{hex}";

async fn not_found(State(shared): S) -> Fail {
    shared.metrics.http_request("unmatched", 404);
    Fail::not_found("no such endpoint; see docs/api.md")
}

async fn count_requests(State(shared): S, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", |r| r.as_str());
    shared.metrics.http_request(route, resp.status().as_u16());
    resp
}

// ---- snapshot ------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<String>,
    after: Option<u64>,
}

fn parse_wait(w: Option<&str>) -> Result<Duration> {
    match w {
        None => Ok(Duration::ZERO),
        Some(s) => humantime::parse_duration(s)
            .or_else(|_| s.parse::<u64>().map(Duration::from_secs))
            .map(|d| d.min(MAX_WAIT))
            .map_err(|_| Fail::bad_request(format!("wait={s:?} is not a duration (e.g. 30s)"))),
    }
}

fn not_modified(headers: &HeaderMap, etag: &[u8]) -> bool {
    headers.get(header::IF_NONE_MATCH).is_some_and(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|t| t == etag || t == b"*")
    })
}

fn serve_bytes(
    headers: &HeaderMap,
    bytes: Bytes,
    etag: HeaderValue,
    content_type: &'static str,
    cache: &'static str,
) -> Response {
    let fresh = not_modified(headers, etag.as_bytes());
    let mut resp = if fresh {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let len = HeaderValue::from(bytes.len());
        let mut r = Response::new(Body::from(bytes));
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONTENT_LENGTH, len);
        r
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

fn doc(shared: &Shared, headers: &HeaderMap, name: &str, route: &str) -> Response {
    let resp = match shared.served() {
        None => Fail::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no snapshot published yet",
            "not_ready",
        )
        .into_response(),
        Some(served) => match served.docs.get(name) {
            None => Fail::not_found(name).into_response(),
            Some(d) => {
                let ctype = if name.ends_with(".json") {
                    "application/json"
                } else {
                    "text/plain; charset=utf-8"
                };
                serve_bytes(
                    headers,
                    d.bytes.clone(),
                    d.etag_header.clone(),
                    ctype,
                    "no-cache",
                )
            }
        },
    };
    shared.metrics.http_request(route, resp.status().as_u16());
    resp
}

async fn catalog(State(shared): S, Query(q): Query<WaitQuery>, headers: HeaderMap) -> Response {
    let wait = match parse_wait(q.wait.as_deref()) {
        Ok(w) => w,
        Err(f) => return f.into_response(),
    };
    if let Some(after) = q.after {
        let newer = |s: &Option<Arc<crate::controller::Served>>| {
            s.as_ref().is_some_and(|s| s.snapshot.serial > after)
        };
        if !newer(&shared.snapshot.borrow())
            && !wait.is_zero()
            && let Ok(_permit) = shared.long_polls.try_acquire()
        {
            let mut rx = shared.snapshot.subscribe();
            tokio::select! {
                _ = rx.wait_for(newer) => {}
                _ = tokio::time::sleep(wait) => {}
                _ = crate::controller::shutting_down(shared.shutdown.subscribe()) => {}
            }
        }
        if !newer(&shared.snapshot.borrow()) {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            if let Some(d) = shared
                .served()
                .and_then(|s| s.docs.get(CATALOG_FILE).cloned())
            {
                resp.headers_mut().insert(header::ETAG, d.etag_header);
            }
            shared.metrics.http_request(ROUTE_CATALOG, 304);
            return resp;
        }
    }
    doc(&shared, &headers, CATALOG_FILE, ROUTE_CATALOG)
}

async fn catalog_sig(State(shared): S, headers: HeaderMap) -> Response {
    doc(&shared, &headers, CATALOG_SIG_FILE, ROUTE_CATALOG_SIG)
}

async fn timestamp(State(shared): S, headers: HeaderMap) -> Response {
    doc(&shared, &headers, TIMESTAMP_FILE, ROUTE_TIMESTAMP)
}

async fn timestamp_sig(State(shared): S, headers: HeaderMap) -> Response {
    doc(&shared, &headers, TIMESTAMP_SIG_FILE, ROUTE_TIMESTAMP_SIG)
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn blob(State(shared): S, Path(hex): Path<String>, headers: HeaderMap) -> Response {
    let resp = blob_response(&shared, &hex, &headers).await;
    shared
        .metrics
        .http_request(ROUTE_BLOB, resp.status().as_u16());
    resp
}

async fn blob_response(shared: &Shared, hex: &str, headers: &HeaderMap) -> Response {
    // The name becomes a file name: only a digest may pass.
    if !is_digest(hex) {
        return Fail::bad_request("a blob is named by 64 lowercase hex digits").into_response();
    }
    let (bytes, etag) = match shared.blobs.get(hex) {
        Some(hit) => hit,
        None => {
            let etag = HeaderValue::from_str(&format!("\"{hex}\""))
                .expect("hex digits are a valid header value");
            if not_modified(headers, etag.as_bytes()) {
                return serve_bytes(
                    headers,
                    Bytes::new(),
                    etag,
                    "application/octet-stream",
                    IMMUTABLE,
                );
            }
            let path = shared
                .config
                .publish_dir
                .join("blobs")
                .join("sha256")
                .join(hex);
            match tokio::fs::read(&path).await {
                Ok(b) => {
                    let b = Bytes::from(b);
                    shared.blobs.put(hex, b.clone(), etag.clone());
                    (b, etag)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Fail::not_found(format!("no blob {hex}")).into_response();
                }
                Err(e) => return Fail::internal(e).into_response(),
            }
        }
    };
    serve_bytes(headers, bytes, etag, "application/octet-stream", IMMUTABLE)
}

// ---- credentials ----------------------------------------------------------------------

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The member behind a member token, under the policy in effect.
fn member(shared: &Shared, headers: &HeaderMap) -> Result<(Member, Arc<Policy>)> {
    let token = bearer(headers).ok_or_else(|| Fail::unauthorized("a member token is required"))?;
    let id = shared
        .store()
        .member_for_token(token)?
        .ok_or_else(|| Fail::unauthorized("unknown token"))?;
    let policy = shared.policy();
    let m = policy.member(&id).cloned().ok_or_else(|| {
        Fail::unauthorized(&format!("member {id} is not in the policy in effect"))
    })?;
    Ok((m, policy))
}

fn has_permission(policy: &Policy, m: &Member, perm: Permission) -> bool {
    policy.roles_of(m).any(|r| r.permissions.contains(&perm))
}

/// Checks an agent's bearer token for its own id; revoked agents get 401.
fn agent(shared: &Shared, id: &str, headers: &HeaderMap) -> Result<()> {
    let token = bearer(headers).ok_or_else(|| Fail::unauthorized("an agent token is required"))?;
    match shared.store().check_agent_token(id, token)? {
        None => Err(Fail::unauthorized("unknown agent or token")),
        Some(true) => Err(Fail::new(
            StatusCode::UNAUTHORIZED,
            format!("agent {id} is revoked"),
            "revoked",
        )),
        Some(false) => Ok(()),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Fail::bad_request(format!("invalid JSON body: {e}")))
}

fn valid_device_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.starts_with('.')
}

// ---- agents ---------------------------------------------------------------------------

fn token_refused(msg: &str, reason: &str) -> Fail {
    Fail::new(StatusCode::UNAUTHORIZED, msg, reason)
}

/// `GET /v1/key`: the public key, so an agent given `--public-key` can compare it with the
/// pinned one before it presents an enrollment token.
async fn key(State(shared): S) -> axum::Json<KeyResponse> {
    axum::Json(KeyResponse {
        public_key: shared.public_key.to_base64(),
        fingerprint: shared.public_key.fingerprint(),
    })
}

async fn enroll(State(shared): S, body: Bytes) -> Result<Response> {
    let req: EnrollRequest = json_body(&body)?;
    if !valid_device_id(&req.device_id) {
        return Err(Fail::bad_request(
            "device_id must be 1-128 letters, digits, '-', '_' or '.'",
        ));
    }
    let id = req.device_id.as_str();
    let now = OffsetDateTime::now_utc();
    // The token is checked first, so only a holder of a valid token learns whether an id is
    // taken; a refusal spends nothing.
    let verdict = shared.store().enroll(
        &req.token,
        id,
        req.platform,
        &req.labels,
        req.hostname.as_deref(),
        now,
    )?;
    let done = match verdict {
        Ok(done) => done,
        Err(EnrollRefusal::AlreadyEnrolled(existing)) => {
            shared.audit(vec![(
                None,
                AuditEvent::new(
                    "agent.enroll_refused",
                    vec!["controller".into()],
                    format!("agent:{id}"),
                    json!({
                        "device": id, "reason": "already_enrolled",
                        "platform": req.platform, "labels": req.labels,
                        "hostname": req.hostname,
                        "token_sha256": token_hash(&req.token),
                        "enrolled": {
                            "platform": existing.platform, "hostname": existing.hostname,
                            "enrolled_at": existing.enrolled_at,
                            "last_checkin": existing.last_checkin,
                        },
                    }),
                ),
            )])?;
            return Err(Fail::new(
                StatusCode::CONFLICT,
                format!(
                    "device {id} is already enrolled and not revoked, so this enrollment was \
                     refused and the enrollment token was not used. If this machine replaces \
                     {id}, revoke it first with `quiver agents revoke {id} --config <the controller's quiver.toml>`, then enroll again; \
                     otherwise enroll with another device id"
                ),
                "already_enrolled",
            ));
        }
        Err(EnrollRefusal::Unknown) => {
            return Err(token_refused("unknown enrollment token", "unknown_token"));
        }
        Err(EnrollRefusal::Expired) => {
            return Err(token_refused("enrollment token expired", "expired"));
        }
        Err(EnrollRefusal::UsedUp) => {
            return Err(token_refused(
                "enrollment token has no uses left",
                "used_up",
            ));
        }
    };
    let mut details = json!({
        "platform": req.platform, "labels": req.labels, "hostname": req.hostname,
        "token_sha256": token_hash(&req.token),
    });
    if let Some(old) = &done.replaced {
        details["replaced"] = json!({
            "enrolled_at": old.enrolled_at, "revoked_at": old.revoked_at,
            "hostname": old.hostname, "runs_closed": done.runs_closed,
        });
    }
    shared.audit(vec![(
        None,
        AuditEvent::new(
            "agent.enrolled",
            vec![id.to_owned()],
            format!("agent:{id}"),
            details,
        ),
    )])?;
    let resp = EnrollResponse {
        agent_id: req.device_id,
        agent_token: done.agent_token,
        public_key: shared.public_key.to_base64(),
        fingerprint: shared.public_key.fingerprint(),
    };
    Ok((StatusCode::CREATED, axum::Json(resp)).into_response())
}

async fn checkin(
    State(shared): S,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<CheckinResponse>> {
    agent(&shared, &id, &headers)?;
    let req: CheckinRequest = json_body(&body)?;
    let policy = shared.policy();
    let groups: Vec<String> = policy
        .groups_for(core_platform(req.platform), &req.labels)
        .into_iter()
        .map(|g| g.id.clone())
        .collect();
    let previous = shared.store().agent(&id)?.and_then(|a| a.applied_serial);
    shared.store().checkin(
        &id,
        req.platform,
        &req.labels,
        &groups,
        req.applied_serial,
        &req.errors,
        &serde_json::to_value(&req.scripts).unwrap_or_default(),
        &req.agent_version,
        OffsetDateTime::now_utc(),
    )?;
    if let Some(serial) = req.applied_serial.filter(|s| Some(*s) != previous) {
        shared.audit(vec![(
            Some(format!("agent.synced:{id}:{serial}")),
            AuditEvent::new(
                "agent.synced",
                vec![id.clone()],
                format!("agent:{id}"),
                json!({"serial": serial, "previous": previous, "groups": groups,
                       "scripts": req.scripts, "errors": req.errors,
                       "agent_version": req.agent_version}),
            ),
        )])?;
    }
    Ok(axum::Json(CheckinResponse { ok: true }))
}

fn assignment(r: RunRecord) -> RunAssignment {
    RunAssignment {
        run_id: r.id,
        // Run records only hold scripts that were in the catalog.
        script: ScriptName::new(&r.script)
            .unwrap_or_else(|_| ScriptName::new("invalid").expect("a valid name")),
        version: r.version.unwrap_or(0),
        params: r.params,
        requested_by: r.requested_by,
    }
}

async fn poll(
    State(shared): S,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<PollResponse>> {
    agent(&shared, &id, &headers)?;
    let wait = parse_wait(q.wait.as_deref())?;
    let after = q.after.unwrap_or(0);
    let waker = shared.agent_waker(&id);
    let news = |shared: &Shared| -> Result<Option<PollResponse>> {
        let serial = shared
            .served()
            .map(|s| s.snapshot.serial)
            .filter(|s| *s > after);
        // A read first: most polls find nothing, and need no write lock.
        let runs = if shared.store().has_pending(&id)? {
            let dispatch = shared
                .store()
                .dispatch_pending(&id, OffsetDateTime::now_utc())?;
            let expired: Vec<_> = dispatch
                .expired
                .iter()
                .map(|r| {
                    (
                        Some(format!("run.finished:{}", r.id)),
                        AuditEvent::new(
                            "run.finished",
                            vec!["controller".into()],
                            format!("run:{}", r.id),
                            json!({"device": r.device, "script": r.script, "version": r.version,
                                   "params": r.params, "requested_by": r.requested_by,
                                   "local": false, "status": "error",
                                   "error": r.result.as_ref().and_then(|x| x.error.clone())}),
                        ),
                    )
                })
                .collect();
            shared.audit(expired)?;
            dispatch.runs
        } else {
            Vec::new()
        };
        Ok(
            (serial.is_some() || !runs.is_empty()).then(|| PollResponse {
                serial,
                runs: runs.into_iter().map(assignment).collect(),
            }),
        )
    };
    let notified = waker.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if let Some(r) = news(&shared)? {
        return Ok(axum::Json(r));
    }
    if !wait.is_zero()
        && let Ok(_permit) = shared.long_polls.try_acquire()
    {
        let mut rx = shared.snapshot.subscribe();
        tokio::select! {
            _ = notified => {}
            _ = rx.wait_for(|s| s.as_ref().is_some_and(|s| s.snapshot.serial > after)) => {}
            _ = tokio::time::sleep(wait) => {}
            _ = crate::controller::shutting_down(shared.shutdown.subscribe()) => {}
        }
    }
    Ok(axum::Json(news(&shared)?.unwrap_or(PollResponse {
        serial: None,
        runs: vec![],
    })))
}

fn status_of(result: &RunResult) -> RunStatus {
    if result.error.is_some() {
        RunStatus::Error
    } else if result.timed_out {
        RunStatus::TimedOut
    } else if result.exit_code == Some(0) {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    }
}

fn finished_event(run: &RunRecord, result: &RunResult, local: bool) -> AuditEvent {
    AuditEvent::new(
        "run.finished",
        vec![run.device.clone()],
        format!("run:{}", run.id),
        json!({
            "device": run.device, "script": run.script, "version": run.version,
            "params": run.params, "requested_by": run.requested_by, "local": local,
            "status": status_of(result), "exit_code": result.exit_code,
            "duration_ms": result.duration_ms, "timed_out": result.timed_out,
            "output_sha256": result.output_sha256, "output_bytes": result.output_bytes,
            "truncated": result.truncated, "error": result.error,
        }),
    )
}

#[derive(Debug, Deserialize)]
struct LocalRun {
    script: String,
    version: u32,
    #[serde(default)]
    params: BTreeMap<String, String>,
    result: RunResult,
    requested_by: String,
}

async fn local_run(
    State(shared): S,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    agent(&shared, &id, &headers)?;
    let req: LocalRun = json_body(&body)?;
    let now = OffsetDateTime::now_utc();
    let run = RunRecord {
        id: new_run_id(),
        device: id.clone(),
        script: req.script,
        version: Some(req.version),
        params: req.params,
        requested_by: req.requested_by,
        status: status_of(&req.result),
        requested_at: now,
        finished_at: Some(now),
        result: Some(req.result.clone()),
    };
    shared.store().insert_run(&run, true)?;
    shared.audit(vec![(None, finished_event(&run, &req.result, true))])?;
    Ok((StatusCode::CREATED, axum::Json(run)).into_response())
}

async fn finish(
    shared: &Shared,
    run_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
    device: Option<&str>,
) -> Result<axum::Json<RunRecord>> {
    let run = shared
        .store()
        .run(run_id)?
        .ok_or_else(|| Fail::not_found(format!("no run {run_id}")))?;
    if device.is_some_and(|d| d != run.device) {
        return Err(Fail::not_found(format!("no run {run_id} for this agent")));
    }
    agent(shared, &run.device, headers)?;
    let result: RunResult = json_body(body)?;
    if matches!(
        run.status,
        RunStatus::Succeeded
            | RunStatus::Failed
            | RunStatus::TimedOut
            | RunStatus::Error
            | RunStatus::Refused
    ) {
        return Err(Fail::new(
            StatusCode::CONFLICT,
            format!("run {run_id} already finished"),
            "finished",
        ));
    }
    let status = status_of(&result);
    let now = OffsetDateTime::now_utc();
    shared.store().finish_run(run_id, status, &result, now)?;
    shared.audit(vec![(None, finished_event(&run, &result, false))])?;
    let run = shared
        .store()
        .run(run_id)?
        .ok_or_else(|| Fail::not_found(run_id))?;
    Ok(axum::Json(run))
}

async fn run_result(
    State(shared): S,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<RunRecord>> {
    finish(&shared, &id, &headers, &body, None).await
}

async fn agent_run_result(
    State(shared): S,
    Path((agent_id, run)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<RunRecord>> {
    finish(&shared, &run, &headers, &body, Some(&agent_id)).await
}

// ---- runs -----------------------------------------------------------------------------

fn refuse(
    shared: &Shared,
    member: &str,
    req: &RunRequest,
    status: StatusCode,
    reason_code: &str,
    reason: String,
) -> Fail {
    if let Err(e) = shared.audit(vec![(
        None,
        AuditEvent::new(
            "run.refused",
            vec![member.to_string()],
            format!("{}@{}", req.script, req.device),
            json!({"device": req.device, "script": req.script, "params": req.params,
                   "reason": reason}),
        ),
    )]) {
        return Fail::internal(e);
    }
    Fail::new(status, reason, reason_code)
}

async fn request_run(State(shared): S, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let (m, policy) = member(&shared, &headers)?;
    let req: RunRequest = json_body(&body)?;
    let device = shared
        .store()
        .agent(&req.device)?
        .ok_or_else(|| Fail::not_found(format!("no enrolled device {}", req.device)))?;
    let served = shared.served();
    let entry: Option<Entry> = served
        .as_ref()
        .and_then(|s| s.snapshot.catalog.entry(&req.script).cloned());
    let entry = entry.ok_or_else(|| {
        Fail::not_found(format!("no script {} in the published catalog", req.script))
    })?;
    shared.audit(vec![(
        None,
        AuditEvent::new(
            "run.requested",
            vec![m.id.clone()],
            format!("{}@{}", req.script, req.device),
            json!({"device": req.device, "script": req.script, "version": entry.version,
                   "params": req.params}),
        ),
    )])?;
    if device.revoked_at.is_some() {
        return Err(refuse(
            &shared,
            &m.id,
            &req,
            StatusCode::CONFLICT,
            "revoked",
            format!("device {} is revoked", req.device),
        ));
    }
    // The device's groups under the policy in effect now.
    let groups: Vec<String> = policy
        .groups_for(core_platform(device.platform), &device.labels)
        .into_iter()
        .map(|g| g.id.clone())
        .collect();
    let risk = core_risk(entry.risk);
    let allowed = groups
        .iter()
        .any(|g| policy.allows(&m, Permission::Execute, &req.script, risk, Some(g)));
    if !allowed {
        return Err(refuse(
            &shared,
            &m.id,
            &req,
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "member {} may not execute {} (risk {}) on any group of device {} ({})",
                m.id,
                req.script,
                entry.risk,
                req.device,
                if groups.is_empty() {
                    "no groups".to_string()
                } else {
                    groups.join(", ")
                }
            ),
        ));
    }
    let staged = entry.platforms.contains_key(&device.platform)
        && entry.groups.iter().any(|g| groups.contains(g));
    if !staged {
        return Err(refuse(
            &shared,
            &m.id,
            &req,
            StatusCode::CONFLICT,
            "not_staged",
            format!(
                "{} is not deployed to device {} (platform {}, groups {})",
                req.script,
                req.device,
                device.platform,
                groups.join(", ")
            ),
        ));
    }
    if let Err(e) = entry.check_params(&req.params) {
        return Err(refuse(
            &shared,
            &m.id,
            &req,
            StatusCode::BAD_REQUEST,
            "bad_params",
            e.to_string(),
        ));
    }
    let run = RunRecord {
        id: new_run_id(),
        device: req.device.clone(),
        script: req.script.clone(),
        version: Some(entry.version),
        params: req.params.clone(),
        requested_by: m.id.clone(),
        status: RunStatus::Pending,
        requested_at: OffsetDateTime::now_utc(),
        finished_at: None,
        result: None,
    };
    shared.store().insert_run(&run, false)?;
    shared.audit(vec![(
        None,
        AuditEvent::new(
            "run.allowed",
            vec![m.id.clone()],
            format!("run:{}", run.id),
            json!({"run": run.id, "device": run.device, "script": run.script,
                   "version": run.version, "params": run.params, "groups": groups}),
        ),
    )])?;
    shared.wake_agent(&run.device);
    Ok((StatusCode::CREATED, axum::Json(run)).into_response())
}

/// Who may read which runs: `audit` sees all, `execute` sees the runs it asked for.
fn run_reader(shared: &Shared, headers: &HeaderMap) -> Result<Option<String>> {
    let (m, policy) = member(shared, headers)?;
    if has_permission(&policy, &m, Permission::Audit) {
        Ok(None)
    } else if has_permission(&policy, &m, Permission::Execute) {
        Ok(Some(m.id))
    } else {
        Err(Fail::new(
            StatusCode::FORBIDDEN,
            "reading runs needs the execute or audit permission",
            "forbidden",
        ))
    }
}

async fn get_run(
    State(shared): S,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<RunRecord>> {
    let only = run_reader(&shared, &headers)?;
    let run = shared
        .store()
        .run(&id)?
        .filter(|r| only.as_ref().is_none_or(|m| &r.requested_by == m))
        .ok_or_else(|| Fail::not_found(format!("no run {id}")))?;
    Ok(axum::Json(run))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    device: Option<String>,
    limit: Option<usize>,
}

async fn list_runs(
    State(shared): S,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<Vec<RunRecord>>> {
    let only = run_reader(&shared, &headers)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let runs = shared
        .store()
        .runs(q.device.as_deref(), only.as_deref(), limit)?;
    Ok(axum::Json(runs))
}

// ---- operations -----------------------------------------------------------------------

async fn hook(
    State(shared): S,
    Path(forge): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let forge = Forge::from_name(&forge)
        .ok_or_else(|| Fail::not_found("unknown forge; use github, gitlab or gitea"))?;
    let proof = headers.get(forge.header()).map(HeaderValue::as_bytes);
    if let Err(why) = webhook::verify(forge, forge.secret(&shared.config.webhooks), proof, &body) {
        tracing::warn!(?forge, "webhook refused: {why}");
        return Err(Fail::unauthorized("webhook signature missing or invalid"));
    }
    tracing::debug!(?forge, "webhook accepted; reconciling");
    shared.trigger.notify_one();
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"triggered": true}))).into_response())
}

/// Triggers a reconcile and waits (up to [`MAX_WAIT`]) for one that started after it.
async fn run_reconcile(shared: &Shared) -> Result<ReconcileReport> {
    let started = shared.started.load(std::sync::atomic::Ordering::SeqCst);
    let mut rx = shared.reconciled.subscribe();
    shared.trigger.notify_one();
    let done = tokio::time::timeout(
        MAX_WAIT,
        rx.wait_for(|r| r.as_ref().is_some_and(|r| r.id > started)),
    )
    .await;
    match done {
        Ok(Ok(r)) => Ok(r.clone().unwrap_or_else(unreachable_report)),
        _ => Err(Fail::new(
            StatusCode::ACCEPTED,
            "reconcile triggered; still running",
            "pending",
        )),
    }
}

fn unreachable_report() -> ReconcileReport {
    ReconcileReport {
        id: 0,
        outcome: "unknown".into(),
        head: None,
        serial: None,
        error: None,
        reason: None,
        duration_ms: 0,
    }
}

async fn trigger_reconcile(
    State(shared): S,
    headers: HeaderMap,
) -> Result<axum::Json<ReconcileReport>> {
    member(&shared, &headers)?;
    Ok(axum::Json(run_reconcile(&shared).await?))
}

async fn rewrite_ack(State(shared): S, headers: HeaderMap) -> Result<axum::Json<ReconcileReport>> {
    let (m, policy) = member(&shared, &headers)?;
    if !has_permission(&policy, &m, Permission::Approve) {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            "acknowledging a rewrite needs the approve permission",
            "forbidden",
        ));
    }
    shared
        .store()
        .request_rewrite_ack(&m.id, OffsetDateTime::now_utc())?;
    Ok(axum::Json(run_reconcile(&shared).await?))
}

/// `GET /v1/status`: the status document.
#[derive(Debug, Serialize)]
pub struct StatusDoc {
    /// Tracked branch.
    pub branch: String,
    /// Head seen by the last reconcile.
    pub head: Option<String>,
    /// Commit of the policy in effect.
    pub policy_commit: Option<String>,
    /// Every script's state.
    pub scripts: Vec<crate::source::ScriptStatus>,
    /// Serial being served.
    pub serial: Option<u64>,
    /// `sha256` of the served catalog.
    pub catalog_sha256: Option<String>,
    /// When the served timestamp expires.
    pub timestamp_expires: Option<String>,
    /// Why the controller is degraded, if it is.
    pub degraded: Option<crate::controller::Degraded>,
    /// Whether `/readyz` says ready.
    pub ready: bool,
    /// Recent reconciles, newest first.
    pub reconciles: Vec<crate::state::ReconcileRow>,
    /// Every enrolled endpoint and its sync state.
    pub endpoints: Vec<EndpointStatus>,
}

/// One endpoint in the status document.
#[derive(Debug, Serialize)]
pub struct EndpointStatus {
    /// The agent.
    #[serde(flatten)]
    pub agent: crate::state::AgentInfo,
    /// `in_sync`, `behind`, `error`, `never` or `revoked`.
    pub sync_state: String,
    /// Whether it is revoked.
    pub revoked: bool,
}

/// Builds the status document.
pub fn status_doc(shared: &Shared) -> std::result::Result<StatusDoc, crate::state::StateError> {
    let lib = shared.library.read().map(|l| l.clone()).unwrap_or_default();
    let served = shared.served();
    let serial = served.as_ref().map(|s| s.snapshot.serial);
    let (agents, reconciles) = {
        let store = shared.store();
        (store.agents()?, store.recent_reconciles(10)?)
    };
    Ok(StatusDoc {
        branch: lib.branch,
        head: lib.head,
        policy_commit: lib.policy_commit,
        scripts: lib.scripts,
        serial,
        catalog_sha256: served
            .as_ref()
            .map(|s| sha256_hex(&s.snapshot.catalog_bytes).to_string()),
        timestamp_expires: served
            .as_ref()
            .map(|s| crate::audit::format_time(s.snapshot.expires)),
        degraded: shared.degraded(),
        ready: shared.readiness().is_ok(),
        reconciles,
        endpoints: agents
            .into_iter()
            .map(|a| EndpointStatus {
                sync_state: a.sync_state(serial).to_string(),
                revoked: a.revoked_at.is_some(),
                agent: a,
            })
            .collect(),
    })
}

async fn status(State(shared): S, headers: HeaderMap) -> Result<axum::Json<StatusDoc>> {
    member(&shared, &headers)?;
    Ok(axum::Json(status_doc(&shared)?))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn audit(
    State(shared): S,
    Query(q): Query<AuditQuery>,
    headers: HeaderMap,
) -> Result<axum::Json<Vec<crate::audit::AuditRecord>>> {
    let (m, policy) = member(&shared, &headers)?;
    if !has_permission(&policy, &m, Permission::Audit) {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            "reading the audit log needs the audit permission",
            "forbidden",
        ));
    }
    let log = shared.audit.clone();
    let (after, limit) = (q.after.unwrap_or(0), q.limit.unwrap_or(100).clamp(1, 1000));
    let records = tokio::task::spawn_blocking(move || log.read_after(after, limit))
        .await
        .map_err(Fail::internal)?
        .map_err(Fail::internal)?;
    Ok(axum::Json(records))
}

async fn readyz(State(shared): S) -> Response {
    match shared.readiness() {
        Ok(serial) => (
            StatusCode::OK,
            axum::Json(json!({"ready": true, "serial": serial})),
        )
            .into_response(),
        Err(reason) => {
            // `degraded`: a reconcile failed and the last good snapshot is still served
            // (`degraded` says why, as in /v1/status); `starting`: nothing published yet;
            // `expired`: the served timestamp could not be re-signed in time.
            let degraded = shared.degraded();
            let served = shared.served().map(|s| s.snapshot.serial);
            let state = match (&degraded, served) {
                (Some(_), _) => "degraded",
                (None, None) => "starting",
                (None, Some(_)) => "expired",
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"ready": false, "state": state, "reason": reason,
                                  "degraded": degraded.map(|d| json!({"reason": d.reason, "since": d.since})),
                                  "serial": served})),
            )
                .into_response()
        }
    }
}

async fn metrics(State(shared): S) -> Response {
    let serial = shared.served().map(|s| s.snapshot.serial);
    if let Ok(agents) = shared.store().agents() {
        let mut counts = BTreeMap::new();
        for a in &agents {
            *counts.entry(a.sync_state(serial)).or_insert(0u64) += 1;
        }
        shared.metrics.set_agents(&counts);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}
