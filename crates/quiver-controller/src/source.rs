//! The input of a reconcile: the approved state of the library as read from git.
//!
//! [`DesiredState`] is plain data. The reconcile decisions in [`crate::reconcile`] are pure
//! functions of it, and [`LibrarySource`] is the one seam to git: the production
//! implementation ([`crate::gitsource::GitSource`]) wraps `quiver-git`'s version index;
//! tests hand in a [`StaticSource`].

use std::collections::BTreeMap;
use std::sync::Arc;

use quiver_core::{Manifest, Policy};
use serde::Serialize;

/// A failure reading the library (git, object database, fetch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

impl SourceError {
    /// A new error with a message that says what and where.
    pub fn new(msg: impl Into<String>) -> SourceError {
        SourceError(msg.into())
    }
}

/// One file of an approved script version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the script folder, `/`-separated.
    pub path: String,
    /// SHA-256 of the exact git blob bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// `0o644` or `0o755`.
    pub mode: u32,
    /// The git blob id, to read the bytes when they must be published.
    pub blob: String,
}

/// The latest approved version of a deployable script.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovedScript {
    /// Script name.
    pub name: String,
    /// Version number (v1, v2, … in order of approved changes).
    pub version: u32,
    /// Commit that brought this version to the branch.
    pub commit: String,
    /// The manifest of this version.
    pub manifest: Manifest,
    /// Its files.
    pub files: Vec<SourceFile>,
}

/// A line of `quiver status --json`'s `scripts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptStatus {
    /// Script name.
    pub name: String,
    /// Deployed version, if any.
    pub version: Option<u32>,
    /// Commit of the deployed version.
    pub commit: Option<String>,
    /// Content digest of the deployed version.
    pub digest: Option<String>,
    /// `approved`, `drifted`, `refused`, `held` or `removed`.
    pub state: String,
    /// Why it is not simply approved.
    pub reason: Option<String>,
}

/// An approved version anywhere in the history (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEvent {
    /// Script name.
    pub script: String,
    /// Version number.
    pub version: u32,
    /// Commit that brought it.
    pub commit: String,
    /// Content digest.
    pub digest: String,
    /// Authors of the change (emails).
    pub authors: Vec<String>,
    /// Approvers that counted (member ids or emails).
    pub approvers: Vec<String>,
    /// Commit time (RFC 3339).
    pub time: String,
}

/// A change that did not become a version (for the audit log and status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChange {
    /// Script name (or the script folder when the name is unknown).
    pub script: String,
    /// Commit that brought the change.
    pub commit: String,
    /// `drifted`, `refused` or `held`.
    pub state: String,
    /// Why.
    pub reason: String,
    /// Authors of the change.
    pub authors: Vec<String>,
}

/// An approved change of the policy (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChange {
    /// Commit that brought it.
    pub commit: String,
    /// Who approved it.
    pub approvers: Vec<String>,
    /// Who wrote it.
    pub authors: Vec<String>,
}

/// An approved commit whose policy files do not load; the previous policy stays in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The commit.
    pub commit: String,
    /// The errors, each `file:line:column: message`.
    pub errors: Vec<String>,
}

/// Everything a reconcile needs to know about the library.
#[derive(Debug, Clone)]
pub struct DesiredState {
    /// The tracked branch.
    pub branch: String,
    /// Its head commit.
    pub head: String,
    /// The commit where the approved state last changed (the catalog's `source_commit`).
    pub source_commit: String,
    /// The commit of the policy in effect.
    pub policy_commit: String,
    /// Number of approved-state changes along the first-parent history (the serial base).
    pub changes: u64,
    /// The policy in effect.
    pub policy: Arc<Policy>,
    /// Set when the newest approved policy does not load.
    pub policy_error: Option<PolicyProblem>,
    /// Deployable scripts at their latest approved version.
    pub scripts: Vec<ApprovedScript>,
    /// Every script's state, for status.
    pub statuses: Vec<ScriptStatus>,
    /// Every approved version in the history.
    pub versions: Vec<VersionEvent>,
    /// Changes that were not approved (drifted, refused, held).
    pub pending: Vec<PendingChange>,
    /// Approved policy changes.
    pub policy_changes: Vec<PolicyChange>,
}

impl DesiredState {
    /// The status counts by state (for metrics).
    pub fn state_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for s in &self.statuses {
            *counts.entry(s.state.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// The seam to git. Implementations keep whatever incremental index they like; every call
/// reads the branch as it is now.
pub trait LibrarySource: Send {
    /// The current head of the tracked branch.
    fn head(&mut self) -> Result<String, SourceError>;
    /// Whether `ancestor` is `head` or on its history (false when `ancestor` is unknown,
    /// e.g. garbage-collected after a force push).
    fn is_ancestor(&mut self, ancestor: &str, head: &str) -> Result<bool, SourceError>;
    /// Brings the index up to date and returns the approved state.
    fn desired_state(&mut self) -> Result<DesiredState, SourceError>;
    /// The bytes of a git blob.
    fn blob(&mut self, oid: &str) -> Result<Vec<u8>, SourceError>;
    /// Forgets incremental state (after an acknowledged rewrite the index is rebuilt).
    fn reset(&mut self);
    /// Persists incremental state, so that a restart costs in proportion to the commits
    /// since. Called once the audit records of the last desired state are durable: state
    /// that only lives in memory until then (policy changes seen) is never lost.
    fn checkpoint(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
}

/// A source that returns a fixed state (tests and benchmarks).
#[derive(Debug, Clone)]
pub struct StaticSource {
    /// The state returned.
    pub state: DesiredState,
    /// Blob bytes by oid.
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// Heads considered ancestors of the current head.
    pub history: Vec<String>,
}

impl LibrarySource for StaticSource {
    fn head(&mut self) -> Result<String, SourceError> {
        Ok(self.state.head.clone())
    }
    fn is_ancestor(&mut self, ancestor: &str, head: &str) -> Result<bool, SourceError> {
        Ok(ancestor == head || self.history.iter().any(|h| h == ancestor))
    }
    fn desired_state(&mut self) -> Result<DesiredState, SourceError> {
        Ok(self.state.clone())
    }
    fn blob(&mut self, oid: &str) -> Result<Vec<u8>, SourceError> {
        self.blobs
            .get(oid)
            .cloned()
            .ok_or_else(|| SourceError::new(format!("blob {oid} not found")))
    }
    fn reset(&mut self) {}
}
