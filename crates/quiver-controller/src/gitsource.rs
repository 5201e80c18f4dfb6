//! [`LibrarySource`] over `quiver-git`: the version index of the tracked branch, updated
//! incrementally (each reconcile costs what the new commits change).
//!
//! The serial needs the number of approved-state changes along the first-parent history
//! and the commit of the last one. The adapter derives them from the index's events: the
//! trust anchor, every new version, every policy change that took effect and every approved
//! removal is one change, counted once per commit. The index is rebuilt from the whole
//! history when the process starts, so every replica and restart counts the same.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use quiver_git::{Event, Index, IndexConfig, Repo, State, TrustAnchor};

use crate::config::{Config, Trust};
use crate::source::{
    ApprovedScript, DesiredState, LibrarySource, PendingChange, PolicyChange, PolicyProblem,
    ScriptStatus, SourceError, SourceFile, VersionEvent,
};

/// The library as `quiver-git` reads it.
pub struct GitSource {
    path: PathBuf,
    config: IndexConfig,
    repo: Option<Repo>,
    index: Index,
    /// Commits where the approved state changed, in history order.
    changes: Vec<String>,
    seen: HashSet<String>,
    /// Approved policy changes seen (for the audit log).
    policy_changes: Vec<PolicyChange>,
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitSource({})", self.path.display())
    }
}

fn err(e: impl std::fmt::Display) -> SourceError {
    SourceError::new(e.to_string())
}

impl GitSource {
    /// A source for the repository and settings of `config` (nothing is read yet).
    pub fn new(config: &Config) -> GitSource {
        let index_config = IndexConfig {
            branch: config.repository.branch.clone(),
            library: config.repository.library.clone(),
            policies: config.repository.policies.clone(),
            trust: match &config.trust {
                Trust::Commit(c) => TrustAnchor::Commit(c.clone()),
                Trust::RootApprovers(a) => TrustAnchor::RootApprovers(a.clone()),
            },
        };
        GitSource {
            path: config.repo_path(),
            index: Index::new(index_config.clone()),
            config: index_config,
            repo: None,
            changes: Vec::new(),
            seen: HashSet::new(),
            policy_changes: Vec::new(),
        }
    }

    fn repo(&mut self) -> Result<&Repo, SourceError> {
        if self.repo.is_none() {
            self.repo = Some(Repo::open(&self.path).map_err(err)?);
        }
        self.repo.as_ref().ok_or_else(|| err("repository not open"))
    }

    fn note_change(&mut self, commit: &str) {
        if self.seen.insert(commit.to_string()) {
            self.changes.push(commit.to_string());
        }
    }

    fn update(&mut self) -> Result<(), SourceError> {
        let fresh = self.index.last_commit.is_none();
        self.repo()?;
        let repo = self
            .repo
            .as_ref()
            .ok_or_else(|| err("repository not open"))?;
        let report = match self.index.update(repo) {
            Ok(r) => r,
            // The controller's own guard (last reconciled commit in the state store) passed,
            // so the new history was accepted (e.g. acknowledged by another process): rebuild.
            Err(quiver_git::Error::Rewrite(_)) => {
                self.reset();
                let repo = self
                    .repo
                    .as_ref()
                    .ok_or_else(|| err("repository not open"))?;
                let r = self.index.update(repo).map_err(err)?;
                self.absorb(true, r.events);
                return Ok(());
            }
            // The index may have processed some commits before failing, and their events
            // are lost with the error: start over next time so the count stays exact.
            Err(e) => {
                self.reset();
                return Err(err(e));
            }
        };
        self.absorb(fresh, report.events);
        Ok(())
    }

    fn absorb(&mut self, fresh: bool, events: Vec<Event>) {
        if fresh && let Some(anchor) = self.index.anchor.clone() {
            // The trusted commit is the first approved state.
            self.note_change(&anchor);
            if let Some(c) = &self.index.policy.commit {
                self.policy_changes.push(PolicyChange {
                    commit: c.clone(),
                    approvers: vec![],
                    authors: vec![],
                });
            }
        }
        for e in events {
            match e {
                Event::Version { commit, .. } => self.note_change(&commit),
                Event::State {
                    state: State::Removed,
                    commit,
                    ..
                } => self.note_change(&commit),
                Event::PolicyApplied { commit, approvers } => {
                    self.note_change(&commit);
                    self.policy_changes.push(PolicyChange {
                        commit,
                        approvers,
                        authors: vec![],
                    });
                }
                _ => {}
            }
        }
    }
}

impl LibrarySource for GitSource {
    fn head(&mut self) -> Result<String, SourceError> {
        let branch = self.config.branch.clone();
        // Re-open on failure: a mirror may have been created since.
        match self.repo()?.branch_head(&branch) {
            Ok(h) => Ok(h.to_string()),
            Err(_) => {
                self.repo = None;
                Ok(self.repo()?.branch_head(&branch).map_err(err)?.to_string())
            }
        }
    }

    fn is_ancestor(&mut self, ancestor: &str, _head: &str) -> Result<bool, SourceError> {
        let branch = self.config.branch.clone();
        match quiver_git::detect_rewrite(self.repo()?, &branch, ancestor) {
            Ok(()) => Ok(true),
            Err(quiver_git::Error::Rewrite(_)) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    fn desired_state(&mut self) -> Result<DesiredState, SourceError> {
        self.update()?;
        let repo = self
            .repo
            .as_ref()
            .ok_or_else(|| err("repository not open"))?;
        let state = self.index.approved_state(repo).map_err(err)?;
        let head = state.head.clone().unwrap_or_default();
        let scripts = state
            .scripts
            .iter()
            .map(|s| ApprovedScript {
                name: s.name.clone(),
                version: s.version.number,
                commit: s.version.commit.clone(),
                manifest: s.manifest.clone(),
                files: s
                    .version
                    .files
                    .iter()
                    .map(|f| SourceFile {
                        path: f.path.clone(),
                        sha256: f.sha256.clone(),
                        size: f.size,
                        mode: f.mode,
                        blob: f.blob.clone(),
                    })
                    .collect(),
            })
            .collect();
        let mut statuses: Vec<ScriptStatus> = self
            .index
            .scripts
            .values()
            .map(|r| {
                let v = r.deployed_version();
                ScriptStatus {
                    name: r.name.clone(),
                    version: v.map(|v| v.number),
                    commit: v.map(|v| v.commit.clone()),
                    digest: v.map(|v| v.digest.clone()),
                    state: r.state().as_str().to_string(),
                    reason: r.reason(),
                }
            })
            .collect();
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        let versions = self
            .index
            .scripts
            .values()
            .chain(self.index.retired.iter())
            .flat_map(|r| r.versions.iter())
            .map(|v| VersionEvent {
                script: v.name.clone(),
                version: v.number,
                commit: v.commit.clone(),
                digest: v.digest.clone(),
                authors: v.authors.iter().map(|p| p.email.clone()).collect(),
                approvers: v.approvers.clone(),
                time: v.time_utc.clone(),
            })
            .collect();
        let mut pending: Vec<PendingChange> = state
            .problems
            .iter()
            .filter(|p| p.state != State::Removed)
            .map(|p| PendingChange {
                script: p.name.clone(),
                commit: p.pending_commit.clone().unwrap_or_default(),
                state: p.state.as_str().to_string(),
                reason: p.reason.clone(),
                authors: vec![],
            })
            .collect();
        if let Some(d) = &self.index.policy.drift {
            pending.push(PendingChange {
                script: format!("{}/", self.config.policies),
                commit: d.commit.clone(),
                state: "drifted".into(),
                reason: d.reason.clone(),
                authors: vec![],
            });
        }
        let policy_error = self.index.policy.error.as_ref().map(|p| PolicyProblem {
            commit: p.commit.clone(),
            errors: vec![p.reason.clone()],
        });
        // Before any approved change (root approvers, empty history) the state is empty.
        let source_commit = self.changes.last().cloned().unwrap_or_default();
        Ok(DesiredState {
            branch: state.branch.clone(),
            head,
            source_commit,
            policy_commit: state.policy_commit.clone().unwrap_or_default(),
            changes: self.changes.len() as u64,
            policy: Arc::clone(&state.policy),
            policy_error,
            scripts,
            statuses,
            versions,
            pending,
            policy_changes: self.policy_changes.clone(),
        })
    }

    fn blob(&mut self, oid: &str) -> Result<Vec<u8>, SourceError> {
        self.repo()?.blob(oid).map_err(err)
    }

    fn reset(&mut self) {
        self.index = Index::new(self.config.clone());
        self.changes.clear();
        self.seen.clear();
        self.policy_changes.clear();
    }
}
