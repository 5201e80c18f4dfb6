//! Operational state in SQLite (`state_dir/state.db`, WAL): the few things that are not a
//! function of git — the serial offset, reconcile history, agents and their check-ins,
//! enrollment and member tokens, runs, and which events have already been audited.
//!
//! Tokens are 32 random bytes shown once; only their SHA-256 is stored, so a copy of the
//! database does not let anyone act as an agent or a member.
//!
//! The schema version is SQLite's `user_version`; [`MIGRATIONS`] moves an older database
//! forward one step at a time inside a transaction. Several processes (the controller and
//! the `quiver token …`/`quiver agents …` commands) may open the same file: WAL plus a
//! busy timeout makes that safe, and audit appends take SQLite's write lock so that two
//! processes never interleave the hash chain.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use quiver_catalog::Platform;
use quiver_catalog::api::{RunRecord, RunResult, RunStatus, SyncProblem};
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::{AuditError, AuditEvent, AuditLog, AuditRecord, Tip, format_time};

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The database is newer than this build.
    #[error(
        "state database schema {found} is newer than this build understands ({known}); upgrade quiver"
    )]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Highest version this build knows.
        known: i64,
    },
    /// Writing the audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A stored JSON column could not be read.
    #[error("state database: bad stored value: {0}")]
    Json(#[from] serde_json::Error),
    /// Creating the state folder failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How long a requested run waits for its device to poll before it expires (see
/// [`Store::dispatch_pending`]).
pub const PENDING_RUN_TTL: time::Duration = time::Duration::minutes(10);

/// What [`Store::dispatch_pending`] did.
#[derive(Debug, Default)]
pub struct Dispatch {
    /// Runs handed to the device now.
    pub runs: Vec<RunRecord>,
    /// Runs that waited too long and were closed instead.
    pub expired: Vec<RunRecord>,
}

/// Schema migrations; `MIGRATIONS[i]` takes the database from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: everything the controller keeps.
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE reconciles (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL, head TEXT, serial INTEGER, outcome TEXT NOT NULL,
        error TEXT, duration_ms INTEGER NOT NULL);
     CREATE TABLE agents (
        id TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, platform TEXT NOT NULL,
        labels TEXT NOT NULL, hostname TEXT, groups TEXT NOT NULL DEFAULT '[]',
        applied_serial INTEGER, last_checkin TEXT, errors TEXT NOT NULL DEFAULT '[]',
        agent_version TEXT, scripts TEXT NOT NULL DEFAULT '[]',
        enrolled_at TEXT NOT NULL, revoked_at TEXT);
     CREATE TABLE enroll_tokens (
        token_sha256 TEXT PRIMARY KEY, created TEXT NOT NULL, expires TEXT NOT NULL,
        uses_left INTEGER NOT NULL);
     CREATE TABLE member_tokens (
        token_sha256 TEXT PRIMARY KEY, member TEXT NOT NULL, created TEXT NOT NULL);
     CREATE TABLE runs (
        id TEXT PRIMARY KEY, device TEXT NOT NULL, script TEXT NOT NULL, version INTEGER,
        params TEXT NOT NULL, requested_by TEXT NOT NULL, status TEXT NOT NULL,
        requested_at TEXT NOT NULL, dispatched_at TEXT, finished_at TEXT, result TEXT,
        local INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX runs_device ON runs(device, status);
     CREATE INDEX runs_time ON runs(requested_at);
     CREATE TABLE audited (key TEXT PRIMARY KEY, seq INTEGER NOT NULL);",
];

/// A new random token with a prefix naming its kind (`qve_` enroll, `qvm_` member, `qva_`
/// agent) so a leaked one is recognisable by secret scanners.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random run id.
pub fn new_run_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("run-{}", hex::encode(bytes))
}

fn ts(t: OffsetDateTime) -> String {
    format_time(t)
}

fn parse_ts(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// An enrolled endpoint as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent (device) id.
    pub id: String,
    /// Platform.
    pub platform: Platform,
    /// Labels from the last check-in (or enrollment).
    pub labels: BTreeMap<String, String>,
    /// Host name given at enrollment.
    pub hostname: Option<String>,
    /// Device groups, computed from the policy in effect at the last check-in.
    pub groups: Vec<String>,
    /// Serial of the snapshot the agent runs.
    pub applied_serial: Option<u64>,
    /// Last check-in.
    pub last_checkin: Option<String>,
    /// Problems reported at the last check-in.
    pub errors: Vec<SyncProblem>,
    /// Agent build.
    pub agent_version: Option<String>,
    /// When it enrolled.
    pub enrolled_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

impl AgentInfo {
    /// `revoked`, `never` (no check-in), `error`, `in_sync` or `behind` against `serial`.
    pub fn sync_state(&self, serial: Option<u64>) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.last_checkin.is_none() {
            "never"
        } else if !self.errors.is_empty() {
            "error"
        } else if self.applied_serial.is_some() && self.applied_serial >= serial {
            "in_sync"
        } else {
            "behind"
        }
    }
}

/// One reconcile, as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileRow {
    /// When it ran.
    pub time: String,
    /// Head it saw.
    pub head: Option<String>,
    /// Serial in effect afterwards.
    pub serial: Option<u64>,
    /// `published`, `unchanged`, `degraded` or `error`.
    pub outcome: String,
    /// Why it was degraded or failed.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// Why an enrollment was refused. A refused enrollment changes nothing: the token keeps its
/// uses and no device is created or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollRefusal {
    /// Not a token we issued.
    Unknown,
    /// Past its expiry.
    Expired,
    /// All uses spent.
    UsedUp,
    /// The device id belongs to an enrolled device that is not revoked: enrolling over it
    /// would take it over (its token revoked, its runs handed to the newcomer).
    AlreadyEnrolled(Box<AgentInfo>),
}

/// A successful enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The new agent token (shown once).
    pub agent_token: String,
    /// The revoked device of the same id this enrollment replaced, if any.
    pub replaced: Option<AgentInfo>,
    /// Runs of the replaced device still pending or dispatched, now closed as `error`.
    pub runs_closed: u64,
}

/// The state database.
pub struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Store, StateError> {
        let mut store = Store {
            conn: Connection::open_in_memory()?,
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let known = MIGRATIONS.len() as i64;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > known {
            return Err(StateError::TooNew {
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The schema version.
    pub fn schema_version(&self) -> Result<i64, StateError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    // ---- key/value ----------------------------------------------------------------

    fn get(&self, key: &str) -> Result<Option<String>, StateError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn set(&self, key: &str, value: &str) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT INTO kv(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    fn get_u64(&self, key: &str) -> Result<Option<u64>, StateError> {
        Ok(self.get(key)?.and_then(|v| v.parse().ok()))
    }

    /// Added to the count of approved-state changes to give the serial; raised when a
    /// rewritten history is acknowledged so serials never go back.
    pub fn serial_offset(&self) -> Result<u64, StateError> {
        Ok(self.get_u64("serial_offset")?.unwrap_or(0))
    }

    /// Sets the serial offset.
    pub fn set_serial_offset(&self, offset: u64) -> Result<(), StateError> {
        self.set("serial_offset", &offset.to_string())
    }

    /// The highest serial ever published from this state.
    pub fn highest_published(&self) -> Result<Option<u64>, StateError> {
        self.get_u64("highest_published")
    }

    /// Records a published serial (keeps the maximum).
    pub fn note_published(&self, serial: u64) -> Result<(), StateError> {
        if self.highest_published()?.is_none_or(|h| serial > h) {
            self.set("highest_published", &serial.to_string())?;
        }
        Ok(())
    }

    /// The last head a reconcile accepted (the base for rewrite detection).
    pub fn last_reconciled(&self) -> Result<Option<String>, StateError> {
        self.get("last_reconciled")
    }

    /// Sets the last accepted head.
    pub fn set_last_reconciled(&self, head: &str) -> Result<(), StateError> {
        self.set("last_reconciled", head)
    }

    /// Asks the next reconcile to accept a rewritten branch.
    pub fn request_rewrite_ack(&self, by: &str, now: OffsetDateTime) -> Result<(), StateError> {
        let v = serde_json::json!({"by": by, "at": ts(now)});
        self.set("rewrite_ack", &v.to_string())
    }

    /// The pending acknowledgement (who, when), if any.
    pub fn rewrite_ack(&self) -> Result<Option<(String, String)>, StateError> {
        let Some(v) = self.get("rewrite_ack")? else {
            return Ok(None);
        };
        let v: serde_json::Value = serde_json::from_str(&v)?;
        Ok(Some((
            v["by"].as_str().unwrap_or("unknown").to_string(),
            v["at"].as_str().unwrap_or_default().to_string(),
        )))
    }

    /// Clears the pending acknowledgement.
    pub fn clear_rewrite_ack(&self) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM kv WHERE key = 'rewrite_ack'", [])?;
        Ok(())
    }

    // ---- reconcile history ----------------------------------------------------------

    /// Appends to the reconcile history (keeps the last 1,000).
    pub fn record_reconcile(&self, row: &ReconcileRow) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT INTO reconciles(time, head, serial, outcome, error, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.time,
                row.head,
                row.serial.map(|s| s as i64),
                row.outcome,
                row.error,
                row.duration_ms as i64
            ],
        )?;
        self.conn.execute(
            "DELETE FROM reconciles WHERE id <= (SELECT MAX(id) FROM reconciles) - 1000",
            [],
        )?;
        Ok(())
    }

    /// The most recent reconciles, newest first.
    pub fn recent_reconciles(&self, limit: usize) -> Result<Vec<ReconcileRow>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT time, head, serial, outcome, error, duration_ms FROM reconciles
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(ReconcileRow {
                    time: r.get(0)?,
                    head: r.get(1)?,
                    serial: r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
                    outcome: r.get(3)?,
                    error: r.get(4)?,
                    duration_ms: r.get::<_, i64>(5)? as u64,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    // ---- audit ----------------------------------------------------------------------

    /// Appends events to the audit log under SQLite's write lock, skipping those whose key
    /// was audited before (so a restart or a second process never duplicates a record), and
    /// remembers the keys in the same transaction.
    pub fn audit(
        &mut self,
        log: &AuditLog,
        events: Vec<(Option<String>, AuditEvent)>,
        now: OffsetDateTime,
    ) -> Result<Vec<AuditRecord>, StateError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut todo = Vec::new();
        let mut keys = Vec::new();
        let mut seen = BTreeSet::new();
        for (key, event) in events {
            if let Some(k) = &key {
                let done: bool = tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM audited WHERE key = ?1)",
                    [k],
                    |r| r.get(0),
                )?;
                if done || !seen.insert(k.clone()) {
                    continue;
                }
            }
            keys.push(key);
            todo.push(event);
        }
        let records = log.append_locked(&todo, now, tip(&tx)?.as_ref())?;
        set_tip(&tx, records.last())?;
        for (key, rec) in keys.iter().zip(&records) {
            if let Some(k) = key {
                tx.execute(
                    "INSERT INTO audited(key, seq) VALUES (?1, ?2)",
                    params![k, rec.seq as i64],
                )?;
            }
        }
        tx.commit()?;
        Ok(records)
    }

    /// The last audit record written through this store (`None` before the first, or
    /// after `quiver audit new-chain`).
    pub fn audit_tip(&self) -> Result<Option<Tip>, StateError> {
        tip(&self.conn)
    }

    /// Starts a new chain: forgets the last record, so the next append begins a new log.
    /// Only for `quiver audit new-chain`, after the old log was moved aside.
    pub fn forget_audit_tip(&self) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM kv WHERE key = 'audit_tip'", [])?;
        Ok(())
    }

    /// Whether an event key has been audited.
    pub fn audited(&self, key: &str) -> Result<bool, StateError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM audited WHERE key = ?1)",
            [key],
            |r| r.get(0),
        )?)
    }

    /// Prunes audit payloads older than `before` under the audit write lock and records
    /// `retention.pruned`. Returns how many payloads were pruned.
    pub fn prune_audit(
        &mut self,
        log: &AuditLog,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (n, range) = log.prune_payloads(before)?;
        if n > 0 {
            let (first, last) = range.unwrap_or_default();
            let expected = tip(&tx)?;
            let records = log.append_locked(
                &[AuditEvent::new(
                    "retention.pruned",
                    vec!["controller".into()],
                    "audit",
                    serde_json::json!({
                        "what": "audit_payloads", "count": n, "first_seq": first,
                        "last_seq": last, "before": ts(before)
                    }),
                )],
                now,
                expected.as_ref(),
            )?;
            set_tip(&tx, records.last())?;
        }
        tx.commit()?;
        Ok(n)
    }

    // ---- tokens ----------------------------------------------------------------------

    /// Creates an enrollment token; returns the token (shown once).
    pub fn create_enroll_token(
        &self,
        expires: OffsetDateTime,
        uses: u32,
        now: OffsetDateTime,
    ) -> Result<String, StateError> {
        let token = new_token("qve_");
        self.conn.execute(
            "INSERT INTO enroll_tokens(token_sha256, created, expires, uses_left) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash(&token), ts(now), ts(expires), uses as i64],
        )?;
        Ok(token)
    }

    /// Enrolls device `id` with `enroll_token`, in one transaction: the token must be known,
    /// unexpired and have a use left, and `id` must be new or revoked. Only then is one use
    /// spent and the device stored with a fresh agent token. A revoked device enrolled again
    /// starts from scratch (no groups, serial, check-in or problems; not revoked), and its
    /// runs that never finished are closed as `error`, so nothing queued for the old device
    /// reaches the new one.
    pub fn enroll(
        &mut self,
        enroll_token: &str,
        id: &str,
        platform: Platform,
        labels: &BTreeMap<String, String>,
        hostname: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Result<Enrollment, EnrollRefusal>, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let hash = token_hash(enroll_token);
        let row: Option<(String, i64)> = tx
            .query_row(
                "SELECT expires, uses_left FROM enroll_tokens WHERE token_sha256 = ?1",
                [&hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        // Dropping `tx` on a refusal rolls back: nothing was written anyway.
        match row {
            None => return Ok(Err(EnrollRefusal::Unknown)),
            Some((expires, _)) if parse_ts(&expires).is_none_or(|e| now > e) => {
                return Ok(Err(EnrollRefusal::Expired));
            }
            Some((_, uses)) if uses <= 0 => return Ok(Err(EnrollRefusal::UsedUp)),
            Some(_) => {}
        }
        let previous = StoreRef(&tx).agents_where("WHERE id = ?1", [id])?.pop();
        if let Some(p) = previous.as_ref().filter(|p| p.revoked_at.is_none()) {
            return Ok(Err(EnrollRefusal::AlreadyEnrolled(Box::new(p.clone()))));
        }
        tx.execute(
            "UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE token_sha256 = ?1",
            [&hash],
        )?;
        let agent_token = new_token("qva_");
        tx.execute(
            "INSERT INTO agents(id, token_sha256, platform, labels, hostname, enrolled_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET token_sha256 = excluded.token_sha256,
               platform = excluded.platform, labels = excluded.labels,
               hostname = excluded.hostname, enrolled_at = excluded.enrolled_at,
               groups = '[]', applied_serial = NULL, last_checkin = NULL, errors = '[]',
               agent_version = NULL, scripts = '[]', revoked_at = NULL",
            params![
                id,
                token_hash(&agent_token),
                platform.to_string(),
                serde_json::to_string(labels)?,
                hostname,
                ts(now)
            ],
        )?;
        let runs_closed = if previous.is_some() {
            let result = RunResult::not_run(format!(
                "closed: device {id} was revoked and enrolled again before this run finished"
            ));
            tx.execute(
                "UPDATE runs SET status = 'error', result = ?2, finished_at = ?3
                 WHERE device = ?1 AND status IN ('pending', 'dispatched', 'running')",
                params![id, serde_json::to_string(&result)?, ts(now)],
            )? as u64
        } else {
            0
        };
        tx.commit()?;
        Ok(Ok(Enrollment {
            agent_token,
            replaced: previous,
            runs_closed,
        }))
    }

    /// Creates an API token for a member; returns the token (shown once).
    pub fn create_member_token(
        &self,
        member: &str,
        now: OffsetDateTime,
    ) -> Result<String, StateError> {
        let token = new_token("qvm_");
        self.conn.execute(
            "INSERT INTO member_tokens(token_sha256, member, created) VALUES (?1, ?2, ?3)",
            params![token_hash(&token), member, ts(now)],
        )?;
        Ok(token)
    }

    /// The member a token belongs to.
    pub fn member_for_token(&self, token: &str) -> Result<Option<String>, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT member FROM member_tokens WHERE token_sha256 = ?1",
                [token_hash(token)],
                |r| r.get(0),
            )
            .optional()?)
    }

    // ---- agents ----------------------------------------------------------------------

    /// Whether `token` is the agent's current token: `None` for an unknown agent or a wrong
    /// token, `Some(revoked)` otherwise.
    pub fn check_agent_token(&self, id: &str, token: &str) -> Result<Option<bool>, StateError> {
        use subtle::ConstantTimeEq;
        let row: Option<(String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT token_sha256, revoked_at FROM agents WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(stored, revoked)| {
            let given = token_hash(token);
            bool::from(stored.as_bytes().ct_eq(given.as_bytes())).then_some(revoked.is_some())
        }))
    }

    /// Stores a check-in.
    #[allow(clippy::too_many_arguments)]
    pub fn checkin(
        &self,
        id: &str,
        platform: Platform,
        labels: &BTreeMap<String, String>,
        groups: &[String],
        applied_serial: Option<u64>,
        errors: &[SyncProblem],
        scripts: &serde_json::Value,
        agent_version: &str,
        now: OffsetDateTime,
    ) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE agents SET platform = ?2, labels = ?3, groups = ?4, applied_serial = ?5,
               errors = ?6, scripts = ?7, agent_version = ?8, last_checkin = ?9 WHERE id = ?1",
            params![
                id,
                platform.to_string(),
                serde_json::to_string(labels)?,
                serde_json::to_string(groups)?,
                applied_serial.map(|s| s as i64),
                serde_json::to_string(errors)?,
                scripts.to_string(),
                agent_version,
                ts(now)
            ],
        )?;
        Ok(())
    }

    /// Revokes an agent; `false` when there is no such agent.
    pub fn revoke_agent(&self, id: &str, now: OffsetDateTime) -> Result<bool, StateError> {
        let n = self.conn.execute(
            "UPDATE agents SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            params![id, ts(now)],
        )?;
        Ok(n > 0)
    }

    /// One agent.
    pub fn agent(&self, id: &str) -> Result<Option<AgentInfo>, StateError> {
        Ok(self.agents_where("WHERE id = ?1", [id])?.pop())
    }

    /// All agents, by id.
    pub fn agents(&self) -> Result<Vec<AgentInfo>, StateError> {
        self.agents_where("", [])
    }

    fn agents_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
    ) -> Result<Vec<AgentInfo>, StateError> {
        StoreRef(&self.conn).agents_where(filter, p)
    }

    // ---- runs ------------------------------------------------------------------------

    /// Stores a new run.
    pub fn insert_run(&self, run: &RunRecord, local: bool) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT INTO runs(id, device, script, version, params, requested_by, status,
                              requested_at, finished_at, result, local)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                run.id,
                run.device,
                run.script,
                run.version.map(i64::from),
                serde_json::to_string(&run.params)?,
                run.requested_by,
                status_str(run.status),
                ts(run.requested_at),
                run.finished_at.map(ts),
                run.result.as_ref().map(serde_json::to_string).transpose()?,
                local
            ],
        )?;
        Ok(())
    }

    /// One run.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        Ok(self.runs_where("WHERE id = ?1", params![id])?.pop())
    }

    /// Runs, newest first, optionally for one device and/or one requester.
    pub fn runs(
        &self,
        device: Option<&str>,
        requested_by: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StateError> {
        self.runs_where(
            "WHERE (?1 IS NULL OR device = ?1) AND (?2 IS NULL OR requested_by = ?2)
             ORDER BY requested_at DESC, id DESC LIMIT ?3",
            params![device, requested_by, limit as i64],
        )
    }

    /// Pending runs for a device, marked dispatched in the same transaction. A run requested
    /// more than [`PENDING_RUN_TTL`] ago is not handed out: it is closed as `error`
    /// ("expired") and returned in [`Dispatch::expired`], so an analyst who gave up on a
    /// device that was offline does not find the script run on it hours later.
    pub fn dispatch_pending(
        &mut self,
        device: &str,
        now: OffsetDateTime,
    ) -> Result<Dispatch, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let runs = {
            let store = StoreRef(&tx);
            store.runs_where(
                "WHERE device = ?1 AND status = 'pending' ORDER BY requested_at, id",
                params![device],
            )?
        };
        let mut out = Dispatch::default();
        for mut r in runs {
            if now - r.requested_at > PENDING_RUN_TTL {
                let result = RunResult::not_run(format!(
                    "expired: device {device} did not pick the run up within {} of the request; request it again",
                    humantime::format_duration(PENDING_RUN_TTL.unsigned_abs())
                ));
                tx.execute(
                    "UPDATE runs SET status = 'error', result = ?2, finished_at = ?3 WHERE id = ?1",
                    params![r.id, serde_json::to_string(&result)?, ts(now)],
                )?;
                r.status = RunStatus::Error;
                r.finished_at = Some(now);
                r.result = Some(result);
                out.expired.push(r);
                continue;
            }
            tx.execute(
                "UPDATE runs SET status = 'dispatched', dispatched_at = ?2 WHERE id = ?1",
                params![r.id, ts(now)],
            )?;
            r.status = RunStatus::Dispatched;
            out.runs.push(r);
        }
        tx.commit()?;
        Ok(out)
    }

    /// Whether a device has pending runs.
    pub fn has_pending(&self, device: &str) -> Result<bool, StateError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM runs WHERE device = ?1 AND status = 'pending')",
            [device],
            |r| r.get(0),
        )?)
    }

    /// Stores a run's result and final status.
    pub fn finish_run(
        &self,
        id: &str,
        status: RunStatus,
        result: &RunResult,
        now: OffsetDateTime,
    ) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE runs SET status = ?2, result = ?3, finished_at = ?4 WHERE id = ?1",
            params![
                id,
                status_str(status),
                serde_json::to_string(result)?,
                ts(now)
            ],
        )?;
        Ok(())
    }

    /// Clears captured output of runs finished before `output_before` and deletes run
    /// records requested before `records_before`. Returns (outputs cleared, records deleted).
    pub fn prune_runs(
        &self,
        output_before: OffsetDateTime,
        records_before: OffsetDateTime,
    ) -> Result<(u64, u64), StateError> {
        let runs = self.runs_where(
            "WHERE result IS NOT NULL AND finished_at < ?1",
            params![ts(output_before)],
        )?;
        let mut cleared = 0u64;
        for r in runs {
            if let Some(mut res) = r.result
                && (!res.stdout_tail.is_empty() || !res.stderr_tail.is_empty())
            {
                res.stdout_tail.clear();
                res.stderr_tail.clear();
                self.conn.execute(
                    "UPDATE runs SET result = ?2 WHERE id = ?1",
                    params![r.id, serde_json::to_string(&res)?],
                )?;
                cleared += 1;
            }
        }
        let deleted = self.conn.execute(
            "DELETE FROM runs WHERE requested_at < ?1",
            params![ts(records_before)],
        )?;
        Ok((cleared, deleted as u64))
    }

    fn runs_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
    ) -> Result<Vec<RunRecord>, StateError> {
        StoreRef(&self.conn).runs_where(filter, p)
    }
}

/// Queries that run on a connection or inside a transaction.
struct StoreRef<'a>(&'a Connection);

impl StoreRef<'_> {
    fn agents_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
    ) -> Result<Vec<AgentInfo>, StateError> {
        let mut stmt = self.0.prepare(&format!(
            "SELECT id, platform, labels, hostname, groups, applied_serial, last_checkin,
                    errors, agent_version, enrolled_at, revoked_at FROM agents {filter} ORDER BY id"
        ))?;
        type Row = (
            String,
            String,
            String,
            Option<String>,
            String,
            Option<i64>,
            Option<String>,
            String,
            Option<String>,
            String,
            Option<String>,
        );
        let rows: Vec<Row> = stmt
            .query_map(p, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|r| {
                Ok(AgentInfo {
                    id: r.0,
                    platform: serde_json::from_value(serde_json::Value::String(r.1))?,
                    labels: serde_json::from_str(&r.2)?,
                    hostname: r.3,
                    groups: serde_json::from_str(&r.4)?,
                    applied_serial: r.5.map(|s| s as u64),
                    last_checkin: r.6,
                    errors: serde_json::from_str(&r.7)?,
                    agent_version: r.8,
                    enrolled_at: r.9,
                    revoked_at: r.10,
                })
            })
            .collect()
    }

    fn runs_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
    ) -> Result<Vec<RunRecord>, StateError> {
        let mut stmt = self.0.prepare(&format!(
            "SELECT id, device, script, version, params, requested_by, status, requested_at,
                    finished_at, result FROM runs {filter}"
        ))?;
        type Row = (
            String,
            String,
            String,
            Option<i64>,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = stmt
            .query_map(p, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|r| {
                Ok(RunRecord {
                    id: r.0,
                    device: r.1,
                    script: r.2,
                    version: r.3.map(|v| v as u32),
                    params: serde_json::from_str(&r.4)?,
                    requested_by: r.5,
                    status: serde_json::from_value(serde_json::Value::String(r.6))?,
                    requested_at: parse_ts(&r.7).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    finished_at: r.8.as_deref().and_then(parse_ts),
                    result: r.9.as_deref().map(serde_json::from_str).transpose()?,
                })
            })
            .collect()
    }
}

fn status_str(s: RunStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "error".into())
}

/// The last audit record written, as remembered in `kv` (see [`Tip`]).
fn tip(conn: &rusqlite::Connection) -> Result<Option<Tip>, StateError> {
    let v: Option<String> = conn
        .query_row("SELECT value FROM kv WHERE key = 'audit_tip'", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(v.as_deref().and_then(Tip::decode))
}

/// Remembers `last` as the last audit record, in the transaction that wrote it.
fn set_tip(conn: &rusqlite::Connection, last: Option<&AuditRecord>) -> Result<(), StateError> {
    if let Some(r) = last {
        let tip = Tip {
            seq: r.seq,
            hash: r.hash.clone(),
        };
        conn.execute(
            "INSERT INTO kv(key, value) VALUES ('audit_tip', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [tip.encode()],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn enroll(s: &mut Store, token: &str, id: &str) -> Result<Enrollment, EnrollRefusal> {
        let labels = BTreeMap::from([("site".to_string(), "hq".to_string())]);
        s.enroll(token, id, Platform::Linux, &labels, Some("h1"), now())
            .expect("db")
    }

    fn uses_left(s: &Store, token: &str) -> i64 {
        s.conn
            .query_row(
                "SELECT uses_left FROM enroll_tokens WHERE token_sha256 = ?1",
                [token_hash(token)],
                |r| r.get(0),
            )
            .expect("token row")
    }

    #[test]
    fn enroll_tokens_expire_and_run_out() {
        let mut s = Store::open_in_memory().expect("db");
        let t = s
            .create_enroll_token(now() + time::Duration::hours(1), 1, now())
            .expect("token");
        assert!(t.starts_with("qve_") && t.len() == 68);
        assert!(enroll(&mut s, &t, "host-1").is_ok());
        assert_eq!(enroll(&mut s, &t, "host-2"), Err(EnrollRefusal::UsedUp));
        assert_eq!(
            enroll(&mut s, "qve_nope", "host-2"),
            Err(EnrollRefusal::Unknown)
        );
        let t = s
            .create_enroll_token(now() - time::Duration::seconds(1), 5, now())
            .expect("token");
        assert_eq!(enroll(&mut s, &t, "host-2"), Err(EnrollRefusal::Expired));
        assert_eq!(uses_left(&s, &t), 5);
        assert_eq!(s.agents().expect("db").len(), 1, "no device for refusals");
    }

    #[test]
    fn an_enrolled_device_cannot_be_taken_over_until_revoked() {
        let mut s = Store::open_in_memory().expect("db");
        let t = s
            .create_enroll_token(now() + time::Duration::hours(1), 2, now())
            .expect("token");
        let first = enroll(&mut s, &t, "host-1").expect("enroll");
        assert_eq!(first.replaced, None);
        s.checkin(
            "host-1",
            Platform::Linux,
            &BTreeMap::new(),
            &["linux".into()],
            Some(3),
            &[],
            &serde_json::json!([]),
            "0.1.0",
            now(),
        )
        .expect("checkin");
        let run = RunRecord {
            id: new_run_id(),
            device: "host-1".into(),
            script: "ps".into(),
            version: Some(1),
            params: BTreeMap::new(),
            requested_by: "bob".into(),
            status: RunStatus::Pending,
            requested_at: now(),
            finished_at: None,
            result: None,
        };
        s.insert_run(&run, false).expect("run");

        // Active: refused, the token's use kept, the device and its token untouched.
        match enroll(&mut s, &t, "host-1") {
            Err(EnrollRefusal::AlreadyEnrolled(a)) => {
                assert_eq!(a.id, "host-1");
                assert!(a.last_checkin.is_some());
            }
            other => panic!("expected AlreadyEnrolled, got {other:?}"),
        }
        assert_eq!(uses_left(&s, &t), 1);
        assert_eq!(
            s.check_agent_token("host-1", &first.agent_token)
                .expect("db"),
            Some(false)
        );
        assert!(s.has_pending("host-1").expect("db"));

        // Revoked: enrolls again from scratch, and the old device's run is closed.
        assert!(s.revoke_agent("host-1", now()).expect("db"));
        let second = enroll(&mut s, &t, "host-1").expect("re-enroll");
        assert_eq!(uses_left(&s, &t), 0);
        let replaced = second.replaced.expect("replaced");
        assert!(replaced.revoked_at.is_some());
        assert_eq!(second.runs_closed, 1);
        let a = s.agent("host-1").expect("db").expect("agent");
        assert_eq!(a.revoked_at, None);
        assert_eq!(a.last_checkin, None);
        assert_eq!(a.applied_serial, None);
        assert!(a.groups.is_empty());
        assert_eq!(
            s.check_agent_token("host-1", &first.agent_token)
                .expect("db"),
            None,
            "the old token stays dead"
        );
        assert_eq!(
            s.check_agent_token("host-1", &second.agent_token)
                .expect("db"),
            Some(false)
        );
        assert!(!s.has_pending("host-1").expect("db"));
        let closed = s.run(&run.id).expect("db").expect("run");
        assert_eq!(closed.status, RunStatus::Error);
        assert!(
            closed
                .result
                .and_then(|r| r.error)
                .is_some_and(|e| e.contains("revoked and enrolled again"))
        );
    }

    #[test]
    fn agents_enroll_check_in_and_revoke() {
        let mut s = Store::open_in_memory().expect("db");
        let labels = BTreeMap::from([("site".to_string(), "hq".to_string())]);
        let t = s
            .create_enroll_token(now() + time::Duration::hours(1), 1, now())
            .expect("token");
        let token = enroll(&mut s, &t, "host-1").expect("enroll").agent_token;
        assert_eq!(
            s.check_agent_token("host-1", &token).expect("db"),
            Some(false)
        );
        assert_eq!(s.check_agent_token("host-1", "qva_bad").expect("db"), None);
        s.checkin(
            "host-1",
            Platform::Linux,
            &labels,
            &["linux".into()],
            Some(3),
            &[],
            &serde_json::json!([]),
            "0.1.0",
            now(),
        )
        .expect("checkin");
        let a = s.agent("host-1").expect("db").expect("agent");
        assert_eq!(a.groups, ["linux"]);
        assert_eq!(a.sync_state(Some(3)), "in_sync");
        assert_eq!(a.sync_state(Some(4)), "behind");
        assert!(s.revoke_agent("host-1", now()).expect("db"));
        assert_eq!(
            s.check_agent_token("host-1", &token).expect("db"),
            Some(true)
        );
        assert_eq!(s.agents().expect("db")[0].sync_state(Some(3)), "revoked");
        assert!(!s.revoke_agent("host-2", now()).expect("db"));
    }

    #[test]
    fn a_run_its_device_does_not_pick_up_in_time_expires_instead_of_running_late() {
        let mut s = Store::open_in_memory().expect("db");
        let run = |requested_at| RunRecord {
            id: new_run_id(),
            device: "host-1".into(),
            script: "ps".into(),
            version: Some(1),
            params: BTreeMap::new(),
            requested_by: "alice".into(),
            status: RunStatus::Pending,
            requested_at,
            finished_at: None,
            result: None,
        };
        let t = now();
        let stale = run(t - PENDING_RUN_TTL - time::Duration::seconds(1));
        let fresh = run(t - PENDING_RUN_TTL + time::Duration::seconds(1));
        s.insert_run(&stale, false).expect("insert");
        s.insert_run(&fresh, false).expect("insert");
        let d = s.dispatch_pending("host-1", t).expect("db");
        assert_eq!(
            d.runs.iter().map(|r| &r.id).collect::<Vec<_>>(),
            [&fresh.id]
        );
        assert_eq!(
            d.expired.iter().map(|r| &r.id).collect::<Vec<_>>(),
            [&stale.id]
        );
        let closed = s.run(&stale.id).expect("db").expect("run");
        assert_eq!(closed.status, RunStatus::Error);
        let error = closed.result.and_then(|r| r.error).unwrap_or_default();
        assert!(
            error.starts_with("expired: device host-1 did not pick the run up within 10m"),
            "{error}"
        );
        assert!(!s.has_pending("host-1").expect("db"));
    }

    #[test]
    fn runs_are_dispatched_once_and_audit_keys_dedupe() {
        let mut s = Store::open_in_memory().expect("db");
        let run = RunRecord {
            id: new_run_id(),
            device: "host-1".into(),
            script: "ps".into(),
            version: Some(1),
            params: BTreeMap::new(),
            requested_by: "alice".into(),
            status: RunStatus::Pending,
            requested_at: now(),
            finished_at: None,
            result: None,
        };
        s.insert_run(&run, false).expect("insert");
        assert!(s.has_pending("host-1").expect("db"));
        assert_eq!(
            s.dispatch_pending("host-1", now()).expect("db").runs.len(),
            1
        );
        assert!(
            s.dispatch_pending("host-1", now())
                .expect("db")
                .runs
                .is_empty()
        );
        assert_eq!(
            s.run(&run.id).expect("db").expect("run").status,
            RunStatus::Dispatched
        );

        let dir = tempfile::tempdir().expect("tmp");
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        let ev = || AuditEvent::new("x", vec![], "y", serde_json::Value::Null);
        let first = s
            .audit(&log, vec![(Some("k".into()), ev()), (None, ev())], now())
            .expect("audit");
        assert_eq!(first.len(), 2);
        let again = s
            .audit(
                &log,
                vec![(Some("k".into()), ev()), (Some("k2".into()), ev())],
                now(),
            )
            .expect("audit");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].seq, 3);
        assert!(s.audited("k2").expect("db"));
    }
}
