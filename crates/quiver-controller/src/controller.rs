//! The I/O shell around the reconcile decisions: fetch, rewrite guard, index update, audit,
//! publish, and the state the HTTP layer serves.
//!
//! [`Shared`] is what every task and request handler sees (store, served snapshot, status,
//! metrics, trigger). [`Worker`] owns the things that are not `Sync` (the git index, the
//! signing key) and runs one reconcile at a time on a blocking thread.
//!
//! Failure policy: whatever fails (fetch, invalid policy, a rewritten branch, a full disk),
//! the last good snapshot keeps being served and `status` + `/readyz` say why.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use quiver_catalog::layout::{CATALOG_FILE, CATALOG_SIG_FILE, TIMESTAMP_FILE, TIMESTAMP_SIG_FILE};
use quiver_catalog::{Limits, PublicKey, SigningKey, sha256_hex};
use quiver_core::Policy;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::{Notify, Semaphore, watch};

use crate::audit::{AuditError, AuditEvent, AuditLog, format_time};
use crate::config::{Config, RepoLocation};
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use crate::publish::{Publisher, Snapshot};
use crate::reconcile::{
    Decision, audit_events, build_catalog, decide, offset_after_ack, serial_for,
};
use crate::source::{DesiredState, LibrarySource, ScriptStatus};
use crate::state::{ReconcileRow, StateError, Store};

/// Most concurrent long polls; beyond this, polls answer at once instead of waiting.
pub const MAX_LONG_POLLS: usize = 10_000;

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state database.
    #[error(transparent)]
    State(#[from] StateError),
    /// The signing key.
    #[error("signing.secret_key: {0}")]
    Key(#[from] quiver_catalog::SignError),
    /// Anything else (listen address, folders).
    #[error("{0}")]
    Other(String),
}

/// Why a reconcile did not end in a current snapshot.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReconcileError {
    /// Fetching the remote failed.
    #[error("{0}")]
    Fetch(String),
    /// Reading git failed.
    #[error("git: {0}")]
    Git(String),
    /// The branch was rewritten and nobody acknowledged it yet.
    #[error(
        "branch {branch} was rewritten: the last reconciled commit {last} is not an ancestor of {head}; \
         the last good snapshot stays published; check the new history and run `quiver rewrite ack`"
    )]
    Rewrite {
        /// Branch.
        branch: String,
        /// Last reconciled commit.
        last: String,
        /// New head.
        head: String,
    },
    /// The newest approved policy does not load.
    #[error("policy at {commit} is invalid: {}; the last good snapshot stays published", errors.join("; "))]
    Policy {
        /// Commit of the broken policy.
        commit: String,
        /// `file:line:column: message` errors.
        errors: Vec<String>,
    },
    /// The serial would not grow although the catalog changed.
    #[error(
        "the catalog changed but its serial {serial} is not above the published {highest}; \
         endpoints would refuse it as a rollback; run `quiver rewrite ack` to raise the serial"
    )]
    SerialWouldNotGrow {
        /// Computed serial.
        serial: u64,
        /// Highest published serial.
        highest: u64,
    },
    /// Writing the snapshot failed.
    #[error("publish: {0}")]
    Publish(String),
    /// The state store or audit log failed.
    #[error("state: {0}")]
    State(String),
}

impl ReconcileError {
    /// The metric label (`quiver_reconcile_errors_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Fetch(_) => "fetch",
            ReconcileError::Git(_) => "git",
            ReconcileError::Rewrite { .. } => "rewrite",
            ReconcileError::Policy { .. } => "policy",
            ReconcileError::SerialWouldNotGrow { .. } => "serial",
            ReconcileError::Publish(_) => "publish",
            ReconcileError::State(_) => "state",
        }
    }
}

impl From<StateError> for ReconcileError {
    fn from(e: StateError) -> Self {
        ReconcileError::State(e.to_string())
    }
}

/// The outcome of one reconcile, as returned by `POST /v1/reconcile` and `quiver reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ReconcileReport {
    /// Ordinal of the reconcile since start.
    pub id: u64,
    /// `published`, `unchanged` or `degraded`.
    pub outcome: String,
    /// Head seen, when known.
    pub head: Option<String>,
    /// Serial served afterwards.
    pub serial: Option<u64>,
    /// Why it is degraded.
    pub error: Option<String>,
    /// Stable reason code of the error.
    pub reason: Option<String>,
    /// Milliseconds taken.
    pub duration_ms: u64,
}

/// A document of the snapshot ready to serve.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The bytes.
    pub bytes: Bytes,
    /// Strong ETag: the quoted SHA-256 of the bytes.
    pub etag: String,
    /// The same, ready to be a header.
    pub etag_header: axum::http::HeaderValue,
}

impl Doc {
    fn new(bytes: &[u8]) -> Doc {
        let etag = format!("\"{}\"", sha256_hex(bytes));
        Doc {
            etag_header: axum::http::HeaderValue::from_str(&etag)
                .expect("hex digits are a valid header value"),
            etag,
            bytes: Bytes::copy_from_slice(bytes),
        }
    }
}

/// The snapshot as served: the published documents with their ETags.
#[derive(Debug, Clone)]
pub struct Served {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// `catalog.json`, `catalog.json.minisig`, `timestamp.json`, `timestamp.json.minisig`.
    pub docs: BTreeMap<&'static str, Doc>,
}

impl Served {
    fn new(snapshot: Snapshot) -> Served {
        let docs = [
            CATALOG_FILE,
            CATALOG_SIG_FILE,
            TIMESTAMP_FILE,
            TIMESTAMP_SIG_FILE,
        ]
        .into_iter()
        .filter_map(|n| snapshot.file(n).map(|b| (n, Doc::new(b))))
        .collect();
        Served { snapshot, docs }
    }
}

/// What status reports about the library, from the last desired state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LibraryView {
    /// Tracked branch.
    pub branch: String,
    /// Head seen.
    pub head: Option<String>,
    /// Commit of the policy in effect.
    pub policy_commit: Option<String>,
    /// Every script's state.
    pub scripts: Vec<ScriptStatus>,
}

/// Why the controller is not ready / degraded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Degraded {
    /// Stable reason code.
    pub reason: String,
    /// What is wrong and what to do.
    pub message: String,
    /// Since when.
    pub since: String,
}

/// A small bounded cache of blob bytes, so hot blobs are served from memory.
#[derive(Debug, Default)]
pub struct BlobCache {
    inner: RwLock<CachedBlobs>,
}

/// Blobs with their ETag by digest, and their total size.
type CachedBlobs = (HashMap<String, (Bytes, axum::http::HeaderValue)>, usize);

impl BlobCache {
    /// Largest blob kept in memory.
    pub const MAX_ITEM: usize = 4 << 20;
    /// Total bytes kept.
    pub const MAX_TOTAL: usize = 256 << 20;

    /// A cached blob and its ETag header.
    pub fn get(&self, digest: &str) -> Option<(Bytes, axum::http::HeaderValue)> {
        self.inner.read().ok()?.0.get(digest).cloned()
    }

    /// Keeps a blob if it fits.
    pub fn put(&self, digest: &str, bytes: Bytes, etag: axum::http::HeaderValue) {
        if bytes.len() > Self::MAX_ITEM {
            return;
        }
        if let Ok(mut g) = self.inner.write()
            && g.1 + bytes.len() <= Self::MAX_TOTAL
            && !g.0.contains_key(digest)
        {
            g.1 += bytes.len();
            g.0.insert(digest.to_string(), (bytes, etag));
        }
    }
}

/// Everything the HTTP handlers and background tasks share.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// The state database.
    pub store: Mutex<Store>,
    /// The audit log.
    pub audit: AuditLog,
    /// The served snapshot (long polls subscribe to it).
    pub snapshot: watch::Sender<Option<Arc<Served>>>,
    /// What status shows about the library.
    pub library: RwLock<LibraryView>,
    /// Set while degraded.
    pub degraded: RwLock<Option<Degraded>>,
    /// The policy in effect (access decisions for runs, tokens, audit reads).
    pub policy: RwLock<Arc<Policy>>,
    /// Wakes the reconcile loop; permits coalesce, so bursts become one reconcile.
    pub trigger: Notify,
    /// Completed reconciles (`POST /v1/reconcile` waits on it).
    pub reconciled: watch::Sender<Option<ReconcileReport>>,
    /// Ordinal of the last reconcile started.
    pub started: std::sync::atomic::AtomicU64,
    /// Metrics.
    pub metrics: Metrics,
    /// The controller's public key.
    pub public_key: PublicKey,
    /// Bounds concurrent long polls.
    pub long_polls: Semaphore,
    /// Hot blobs.
    pub blobs: BlobCache,
    /// Flips to true on shutdown.
    pub shutdown: watch::Sender<bool>,
    agent_wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    /// Locks the store (a poisoned lock is still usable: SQLite keeps its own consistency).
    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The served snapshot.
    pub fn served(&self) -> Option<Arc<Served>> {
        self.snapshot.borrow().clone()
    }

    /// The policy in effect.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The current degradation, if any.
    pub fn degraded(&self) -> Option<Degraded> {
        self.degraded.read().ok().and_then(|d| d.clone())
    }

    /// Ready means: a snapshot is served and nothing is wrong. `Err` carries the reason.
    pub fn readiness(&self) -> Result<u64, String> {
        let served = self.served();
        match (served, self.degraded()) {
            (None, Some(d)) => Err(format!("no snapshot published yet: {}", d.message)),
            (None, None) => Err("no snapshot published yet".into()),
            (Some(_), Some(d)) => Err(d.message),
            (Some(s), None) if s.snapshot.expires < OffsetDateTime::now_utc() => Err(format!(
                "the served timestamp expired at {}; endpoints refuse it (re-signing fails: check the log)",
                format_time(s.snapshot.expires)
            )),
            (Some(s), None) => Ok(s.snapshot.serial),
        }
    }

    /// Appends events to the audit log (de-duplicated by key).
    pub fn audit(&self, events: Vec<(Option<String>, AuditEvent)>) -> Result<(), StateError> {
        let written = self
            .store()
            .audit(&self.audit, events, OffsetDateTime::now_utc())?;
        // What the log records is what an operator watching the controller wants to see
        // (a drifted or refused change, a policy change, an enrollment), one line each.
        for r in &written {
            tracing::info!(seq = r.seq, actors = ?r.actors, "{} {}", r.kind, r.subject);
        }
        Ok(())
    }

    /// The waker of an agent's long poll.
    pub fn agent_waker(&self, id: &str) -> Arc<Notify> {
        let mut map = self.agent_wakers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    /// Wakes an agent's long poll (a run is waiting for it).
    pub fn wake_agent(&self, id: &str) {
        self.agent_waker(id).notify_one();
    }

    fn install(&self, snap: Snapshot) {
        self.metrics.set_serial(snap.serial);
        self.snapshot
            .send_replace(Some(Arc::new(Served::new(snap))));
    }

    fn set_degraded(&self, err: Option<&ReconcileError>) {
        let mut d = self.degraded.write().unwrap_or_else(|p| p.into_inner());
        *d = err.map(|e| Degraded {
            reason: e.reason().to_string(),
            message: e.to_string(),
            since: d
                .as_ref()
                .filter(|old| old.reason == e.reason())
                .map(|old| old.since.clone())
                .unwrap_or_else(|| format_time(OffsetDateTime::now_utc())),
        });
    }

    fn set_library(&self, d: &DesiredState, skipped: &[(String, String)]) {
        let mut scripts = d.statuses.clone();
        for (name, reason) in skipped {
            if let Some(s) = scripts.iter_mut().find(|s| &s.name == name) {
                s.state = "refused".into();
                s.reason = Some(reason.clone());
            }
        }
        let view = LibraryView {
            branch: d.branch.clone(),
            head: Some(d.head.clone()),
            policy_commit: Some(d.policy_commit.clone()),
            scripts,
        };
        let mut counts = BTreeMap::new();
        for s in &view.scripts {
            *counts.entry(s.state.clone()).or_insert(0) += 1;
        }
        self.metrics.set_scripts(&counts);
        *self.library.write().unwrap_or_else(|p| p.into_inner()) = view;
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = d.policy.clone();
    }
}

/// Resolves once `rx` says the controller is shutting down (or its sender is gone).
pub async fn shutting_down(mut rx: watch::Receiver<bool>) {
    loop {
        let down = *rx.borrow_and_update();
        if down || rx.changed().await.is_err() {
            return;
        }
    }
}

/// The non-`Sync` half: the library source, the mirror and the signing key.
pub struct Worker {
    source: Box<dyn LibrarySource>,
    mirror: Option<Mirror>,
    publisher: Publisher,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Worker")
    }
}

/// A controller: shared state plus the worker.
#[derive(Debug, Clone)]
pub struct Controller {
    /// Shared with handlers and tasks.
    pub shared: Arc<Shared>,
    worker: Arc<Mutex<Worker>>,
}

impl Controller {
    /// Opens the state, loads the key and whatever snapshot is already published.
    pub fn open(config: Config, source: Box<dyn LibrarySource>) -> Result<Controller, StartError> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| StartError::Other(format!("{}: {e}", config.state_dir.display())))?;
        std::fs::create_dir_all(&config.publish_dir)
            .map_err(|e| StartError::Other(format!("{}: {e}", config.publish_dir.display())))?;
        let key = SigningKey::from_file(&config.secret_key)?;
        let public_key = key.public_key();
        let store = Store::open(&config.state_db())?;
        check_audit_log(&store, &config.audit_log())?;
        let publisher = Publisher::new(config.publish_dir.clone(), key, config.timestamp.validity);
        let existing = publisher.load_existing();
        let mirror = match &config.repository.location {
            RepoLocation::Remote(url) => Some(Mirror::new(
                url.clone(),
                config.mirror_dir(),
                config.repository.branch.clone(),
                config.repository.auth.clone(),
            )),
            RepoLocation::Local(_) => None,
        };
        let shared = Arc::new(Shared {
            audit: AuditLog::new(config.audit_log()),
            library: RwLock::new(LibraryView {
                branch: config.repository.branch.clone(),
                ..Default::default()
            }),
            config,
            store: Mutex::new(store),
            snapshot: watch::Sender::new(None),
            degraded: RwLock::new(None),
            policy: RwLock::new(Arc::new(Policy::default())),
            trigger: Notify::new(),
            reconciled: watch::Sender::new(None),
            started: Default::default(),
            metrics: Metrics::new(),
            public_key,
            long_polls: Semaphore::new(MAX_LONG_POLLS),
            blobs: BlobCache::default(),
            shutdown: watch::Sender::new(false),
            agent_wakers: Mutex::new(HashMap::new()),
        });
        if let Some(snap) = existing {
            tracing::info!(
                serial = snap.serial,
                "serving the snapshot found in the publish directory"
            );
            shared.install(snap);
        }
        Ok(Controller {
            shared,
            worker: Arc::new(Mutex::new(Worker {
                source,
                mirror,
                publisher,
            })),
        })
    }

    /// Runs one reconcile on the current thread (blocking).
    pub fn reconcile_blocking(&self) -> ReconcileReport {
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        reconcile_once(&self.shared, &mut worker)
    }

    /// Runs one reconcile on a blocking thread.
    pub async fn reconcile(&self) -> ReconcileReport {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reconcile_blocking())
            .await
            .unwrap_or_else(|e| ReconcileReport {
                id: 0,
                outcome: "degraded".into(),
                head: None,
                serial: None,
                error: Some(format!("reconcile panicked: {e}")),
                reason: Some("panic".into()),
                duration_ms: 0,
            })
    }

    /// Re-signs the timestamp if it is older than `max_age` (or always with `None`).
    pub fn resign_blocking(&self, max_age: Option<Duration>) -> Result<bool, ReconcileError> {
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        let Some(served) = self.shared.served() else {
            return Ok(false);
        };
        let now = OffsetDateTime::now_utc();
        if let Some(age) = max_age {
            let issued = served.snapshot.issued_at;
            if now - issued < time::Duration::try_from(age).unwrap_or(time::Duration::MAX) {
                return Ok(false);
            }
        }
        let next = worker
            .publisher
            .resign(&served.snapshot, now)
            .map_err(|e| ReconcileError::Publish(e.to_string()))?;
        self.shared.install(next);
        Ok(true)
    }
}

/// One reconcile, with timing, metrics, status and history around [`reconcile_inner`].
/// Refuses to start on an audit log that does not verify, or that does not end with the
/// last record this state database saw written: continuing such a chain would bury the
/// damage under new records. A log kept from before the database remembered its end is
/// adopted as it stands (it verified).
fn check_audit_log(store: &Store, path: &std::path::Path) -> Result<(), StartError> {
    let expected = store.audit_tip()?;
    let found = match crate::audit::verify(path) {
        Ok(v) => v.tip(),
        Err(AuditError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(AuditError::Broken { broken, .. }) => {
            return Err(StartError::Other(format!(
                "the audit log {} does not verify: {broken}; the controller does not append to a broken chain. Keep the file as evidence, move it aside and start a new chain with `quiver audit new-chain --config … --reason …`",
                path.display()
            )));
        }
        Err(e) => return Err(StartError::Other(e.to_string())),
    };
    match (expected, found) {
        (Some(expected), found) if found.as_ref() != Some(&expected) => Err(StartError::Other(
            AuditError::Diverged {
                path: path.to_path_buf(),
                expected,
                found,
            }
            .to_string(),
        )),
        _ => Ok(()),
    }
}

fn reconcile_once(shared: &Shared, w: &mut Worker) -> ReconcileReport {
    let id = shared
        .started
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    let start = Instant::now();
    let now = OffsetDateTime::now_utc();
    let mut head = None;
    let result = reconcile_inner(shared, w, now, &mut head);
    let elapsed = start.elapsed();
    shared.metrics.observe_reconcile(elapsed.as_secs_f64());
    let serial = shared.served().map(|s| s.snapshot.serial);
    let report = match &result {
        Ok(published) => {
            shared.set_degraded(None);
            ReconcileReport {
                id,
                outcome: if *published { "published" } else { "unchanged" }.into(),
                head: head.clone(),
                serial,
                error: None,
                reason: None,
                duration_ms: elapsed.as_millis() as u64,
            }
        }
        Err(e) => {
            shared.metrics.reconcile_error(e.reason());
            shared.set_degraded(Some(e));
            tracing::warn!(reason = e.reason(), "reconcile degraded: {e}");
            ReconcileReport {
                id,
                outcome: "degraded".into(),
                head: head.clone(),
                serial,
                error: Some(e.to_string()),
                reason: Some(e.reason().into()),
                duration_ms: elapsed.as_millis() as u64,
            }
        }
    };
    if let Err(e) = shared.store().record_reconcile(&ReconcileRow {
        time: format_time(now),
        head,
        serial,
        outcome: report.outcome.clone(),
        error: report.error.clone(),
        duration_ms: report.duration_ms,
    }) {
        tracing::warn!("recording the reconcile failed: {e}");
    }
    match report.outcome.as_str() {
        "published" => {
            tracing::info!(serial = ?report.serial, head = ?report.head, ms = report.duration_ms, "published a new snapshot")
        }
        "unchanged" => {
            tracing::info!(serial = ?report.serial, head = ?report.head, ms = report.duration_ms, "reconciled: the approved state is unchanged, nothing to publish")
        }
        _ => {}
    }
    shared.reconciled.send_replace(Some(report.clone()));
    report
}

/// Returns whether a new snapshot was published.
fn reconcile_inner(
    shared: &Shared,
    w: &mut Worker,
    now: OffsetDateTime,
    head_seen: &mut Option<String>,
) -> Result<bool, ReconcileError> {
    let git = |e: crate::source::SourceError| ReconcileError::Git(e.0);
    if let Some(m) = &w.mirror {
        m.fetch().map_err(|e| ReconcileError::Fetch(e.0))?;
    }
    let head = w.source.head().map_err(git)?;
    *head_seen = Some(head.clone());

    // Rewrite guard: the last reconciled commit must still be on the branch's history.
    let (last, ack) = {
        let store = shared.store();
        (store.last_reconciled()?, store.rewrite_ack()?)
    };
    let mut acknowledged = None;
    if let Some(last) = last.filter(|l| *l != head)
        && !w.source.is_ancestor(&last, &head).map_err(git)?
    {
        match ack {
            Some((by, at)) => {
                w.source.reset();
                acknowledged = Some((by, at, last));
            }
            None => {
                let branch = shared.config.repository.branch.clone();
                shared.audit(vec![(
                    Some(format!("rewrite.detected:{last}:{head}")),
                    AuditEvent::new(
                        "rewrite.detected",
                        vec!["controller".into()],
                        format!("branch:{branch}"),
                        json!({"branch": branch, "last_reconciled": last, "head": head}),
                    ),
                )])?;
                return Err(ReconcileError::Rewrite { branch, last, head });
            }
        }
    } else if ack.is_some() {
        tracing::info!(
            "a rewrite acknowledgement was pending but the history is not rewritten; clearing it"
        );
        shared.store().clear_rewrite_ack()?;
    }

    let desired = w.source.desired_state().map_err(git)?;
    *head_seen = Some(desired.head.clone());
    if let Some((by, at, old)) = acknowledged {
        let store = shared.store();
        let highest = [
            store.highest_published()?,
            shared.served().map(|s| s.snapshot.serial),
        ]
        .into_iter()
        .flatten()
        .max();
        let offset = offset_after_ack(desired.changes, store.serial_offset()?, highest);
        store.set_serial_offset(offset)?;
        store.clear_rewrite_ack()?;
        drop(store);
        let branch = &desired.branch;
        shared.audit(vec![(
            Some(format!("rewrite.acknowledged:{old}:{}", desired.head)),
            AuditEvent::new(
                "rewrite.acknowledged",
                vec![by],
                format!("branch:{branch}"),
                json!({"branch": branch, "previous": old, "head": desired.head,
                       "requested_at": at, "serial_offset": offset}),
            ),
        )])?;
    }

    shared.audit(
        audit_events(&desired)
            .into_iter()
            .map(|(k, e)| (Some(k), e))
            .collect(),
    )?;
    shared.store().set_last_reconciled(&desired.head)?;
    // Everything the index reported is in the audit log now: persist it, so that a restart
    // resumes here instead of reading the whole history again.
    if let Err(e) = w.source.checkpoint() {
        tracing::warn!("persisting the version index failed (the next start rebuilds it): {e}");
    }

    let offset = shared.store().serial_offset()?;
    let serial = serial_for(desired.changes, offset);
    let built = build_catalog(&desired, serial, &Limits::default());
    shared.set_library(&desired, &built.skipped);
    if let Some(p) = &desired.policy_error {
        return Err(ReconcileError::Policy {
            commit: p.commit.clone(),
            errors: p.errors.clone(),
        });
    }

    let served = shared.served();
    let highest = [
        shared.store().highest_published()?,
        served.as_ref().map(|s| s.snapshot.serial),
    ]
    .into_iter()
    .flatten()
    .max();
    match decide(
        &built.bytes,
        serial,
        served.as_ref().map(|s| &s.snapshot.catalog_bytes[..]),
        highest,
    ) {
        Decision::Unchanged => Ok(false),
        Decision::SerialWouldNotGrow { serial, highest } => {
            Err(ReconcileError::SerialWouldNotGrow { serial, highest })
        }
        Decision::Publish => {
            let publish = |e: crate::publish::PublishError| ReconcileError::Publish(e.to_string());
            // Blobs first, all made durable before the catalog that names them.
            let mut written = Vec::new();
            for (digest, oid) in &built.blobs {
                if !w.publisher.has_blob(digest) {
                    let bytes = w.source.blob(oid).map_err(git)?;
                    w.publisher
                        .write_blob_unsynced(digest, &bytes)
                        .map_err(publish)?;
                    written.push(digest.clone());
                }
            }
            w.publisher.sync_blobs(&written).map_err(publish)?;
            let entries: Vec<String> = built
                .catalog
                .entries
                .iter()
                .map(|e| format!("{}@v{}", e.script, e.version))
                .collect();
            let digest = sha256_hex(&built.bytes).to_string();
            let snap = w
                .publisher
                .publish(built.catalog, built.bytes, now)
                .map_err(publish)?;
            shared.store().note_published(serial)?;
            shared.install(snap);
            shared.audit(vec![(
                Some(format!("snapshot.published:{serial}:{digest}")),
                AuditEvent::new(
                    "snapshot.published",
                    vec!["controller".into()],
                    format!("snapshot:{serial}"),
                    json!({"serial": serial, "catalog_sha256": digest,
                           "source_commit": desired.source_commit,
                           "policy_commit": desired.policy_commit,
                           "head": desired.head, "entries": entries}),
                ),
            )])?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{ApprovedScript, SourceFile, StaticSource};
    use quiver_catalog::KeyPair;
    use std::path::Path;

    fn config(dir: &Path) -> Config {
        let keys = KeyPair::generate().expect("keys");
        keys.write(&dir.join("k.key"), &dir.join("k.pub"))
            .expect("write keys");
        let text = "[repository]\npath = \"repo\"\n[trust]\ncommit = \"abcdef1\"\n[signing]\nsecret_key = \"k.key\"\n";
        Config::parse(&dir.join("quiver.toml"), text, &|_| None).expect("config")
    }

    fn source(head: &str, changes: u64, content: &[u8]) -> StaticSource {
        let manifest = quiver_core::Manifest::parse(
            "s/script.toml",
            "name = \"ps\"\nplatforms = [\"linux\"]\n[entry.linux]\nfile = \"ps.sh\"\ninterpreter = \"bash\"\n",
        )
        .expect("manifest");
        let digest = sha256_hex(content).to_string();
        StaticSource {
            state: DesiredState {
                branch: "main".into(),
                head: head.into(),
                source_commit: head.into(),
                policy_commit: "p".into(),
                changes,
                policy: Arc::new(Policy::default()),
                policy_error: None,
                scripts: vec![ApprovedScript {
                    name: "ps".into(),
                    version: changes as u32,
                    commit: head.into(),
                    manifest,
                    files: vec![SourceFile {
                        path: "ps.sh".into(),
                        sha256: digest,
                        size: content.len() as u64,
                        mode: 0o644,
                        blob: "blob1".into(),
                    }],
                }],
                statuses: vec![],
                versions: vec![],
                pending: vec![],
                policy_changes: vec![],
            },
            blobs: BTreeMap::from([("blob1".to_string(), content.to_vec())]),
            history: vec![],
        }
    }

    #[test]
    fn publishes_once_keeps_serial_on_restart_and_guards_rewrites() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = config(dir.path());
        let c =
            Controller::open(cfg.clone(), Box::new(source("h1", 1, b"echo 1\n"))).expect("open");
        assert_eq!(c.reconcile_blocking().outcome, "published");
        assert_eq!(c.reconcile_blocking().outcome, "unchanged");
        assert_eq!(c.shared.readiness(), Ok(1));
        drop(c);

        // Restart on the same history: same serial, nothing new in the audit log.
        let before = crate::audit::verify(&cfg.audit_log())
            .expect("audit")
            .records;
        let c =
            Controller::open(cfg.clone(), Box::new(source("h1", 1, b"echo 1\n"))).expect("open");
        assert_eq!(c.shared.readiness(), Ok(1));
        assert_eq!(c.reconcile_blocking().outcome, "unchanged");
        assert_eq!(
            crate::audit::verify(&cfg.audit_log())
                .expect("audit")
                .records,
            before
        );
        drop(c);

        // A rewritten branch: the old snapshot stays, degraded until acknowledged.
        let c =
            Controller::open(cfg.clone(), Box::new(source("x1", 1, b"echo x\n"))).expect("open");
        let r = c.reconcile_blocking();
        assert_eq!(r.reason.as_deref(), Some("rewrite"), "{r:?}");
        assert!(c.shared.readiness().unwrap_err().contains("rewritten"));
        assert_eq!(c.shared.served().expect("served").snapshot.serial, 1);
        c.shared
            .store()
            .request_rewrite_ack("alice", OffsetDateTime::now_utc())
            .expect("ack");
        let r = c.reconcile_blocking();
        assert_eq!(r.outcome, "published", "{r:?}");
        assert_eq!(r.serial, Some(2), "serial rises above everything published");
        assert_eq!(c.shared.readiness(), Ok(2));
        let log = std::fs::read_to_string(cfg.audit_log()).expect("log");
        assert!(log.contains("rewrite.detected") && log.contains("rewrite.acknowledged"));
        crate::audit::verify(&cfg.audit_log()).expect("chain");
    }

    #[test]
    fn retention_prunes_runs_and_audit_payloads_but_keeps_the_chain() {
        use quiver_catalog::api::{RunRecord, RunResult, RunStatus};
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = config(dir.path());
        let c =
            Controller::open(cfg.clone(), Box::new(source("h1", 1, b"echo 1\n"))).expect("open");
        assert_eq!(c.reconcile_blocking().outcome, "published");
        let now = OffsetDateTime::now_utc();
        let run = RunRecord {
            id: "run-1".into(),
            device: "d".into(),
            script: "ps".into(),
            version: Some(1),
            params: BTreeMap::new(),
            requested_by: "bob".into(),
            status: RunStatus::Pending,
            requested_at: now,
            finished_at: None,
            result: None,
        };
        let result = RunResult {
            exit_code: Some(0),
            duration_ms: 1,
            timed_out: false,
            stdout_tail: "secret output".into(),
            stderr_tail: String::new(),
            truncated: false,
            output_sha256: sha256_hex(b"secret output"),
            output_bytes: 13,
            error: None,
        };
        {
            let store = c.shared.store();
            store.insert_run(&run, false).expect("run");
            store
                .finish_run("run-1", RunStatus::Succeeded, &result, now)
                .expect("finish");
        }
        // Default retention: output 30 days, records 90 days, audit payloads 365 days.
        let in_40_days = now + time::Duration::days(40);
        let p = crate::retention::run_once(&c.shared, in_40_days).expect("retention");
        assert_eq!((p.outputs, p.runs, p.audit_payloads), (1, 0, 0));
        let kept = c.shared.store().run("run-1").expect("db").expect("run");
        assert_eq!(
            kept.result.expect("result").stdout_tail,
            "",
            "output pruned, record kept"
        );
        let in_400_days = now + time::Duration::days(400);
        let p = crate::retention::run_once(&c.shared, in_400_days).expect("retention");
        assert_eq!(p.runs, 1);
        assert!(p.audit_payloads > 0);
        assert!(c.shared.store().run("run-1").expect("db").is_none());
        let log = std::fs::read_to_string(cfg.audit_log()).expect("log");
        assert!(log.contains("\"details\":null"));
        assert_eq!(log.matches("retention.pruned").count(), 3, "{log}");
        crate::audit::verify(&cfg.audit_log()).expect("the chain still verifies");
    }
}
