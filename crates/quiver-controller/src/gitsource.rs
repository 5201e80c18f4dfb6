//! [`LibrarySource`] over `quiver-git`: the version index of the tracked branch, updated
//! incrementally (each reconcile costs what the new commits change) and persisted in the
//! state folder (`index.json`), so that a restart costs what changed while it was down.
//!
//! The serial base and the catalog's `source_commit` are the index's own count of
//! approved-state changes and the commit of the last one (`approved_changes`,
//! `last_approved_change`). Both are functions of the history alone: a cold index, a
//! persisted one and one updated after every commit agree, so every replica and every
//! restart publishes the same serial and the same catalog bytes.

use std::path::PathBuf;
use std::sync::Arc;

use quiver_git::{Event, Index, IndexConfig, Person, Repo, State, TrustAnchor, UpdateReport};

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
    /// Where the index is persisted (`None`: it is not).
    index_file: Option<PathBuf>,
    /// Whether the persisted index was looked at (once, before the first update).
    loaded: bool,
    /// `last_commit` of the index as last persisted.
    persisted: Option<String>,
    /// Approved policy changes seen since start (for the audit log; the ones before were
    /// audited before the index was persisted).
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

/// Emails, in order, each once.
fn emails(people: &[Person]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(people.len());
    for p in people {
        if !out.contains(&p.email) {
            out.push(p.email.clone());
        }
    }
    out
}

impl GitSource {
    /// A source for the repository and settings of `config` (nothing is read yet). The
    /// index is persisted in the state folder ([`Config::index_file`]).
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
            index_file: Some(config.index_file()),
            loaded: false,
            persisted: None,
            policy_changes: Vec::new(),
        }
    }

    fn repo(&mut self) -> Result<&Repo, SourceError> {
        if self.repo.is_none() {
            self.repo = Some(Repo::open(&self.path).map_err(err)?);
        }
        self.repo.as_ref().ok_or_else(|| err("repository not open"))
    }

    /// Takes the persisted index when it is usable; otherwise says why and leaves the
    /// empty index, which the next update builds from the whole history.
    fn load_persisted(&mut self) {
        let Some(path) = self.index_file.clone() else {
            return;
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(
                    "no version index at {}; building it from the history",
                    path.display()
                );
                return;
            }
            Err(e) => {
                tracing::warn!(
                    "{}: {e}; rebuilding the version index from the history",
                    path.display()
                );
                return;
            }
        };
        let index = match Index::from_json(&bytes) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(
                    "{}: {e}; rebuilding the version index from the history",
                    path.display()
                );
                return;
            }
        };
        if let Err(why) = self.usable(&index) {
            tracing::warn!(
                "{}: {why}; rebuilding the version index from the history",
                path.display()
            );
            return;
        }
        tracing::info!(
            last_commit = index.last_commit.as_deref().unwrap_or(""),
            approved_changes = index.approved_changes,
            "loaded the version index from {}",
            path.display()
        );
        self.persisted = index.last_commit.clone();
        self.index = index;
    }

    /// Whether a persisted index was built for this configuration and trust anchor.
    fn usable(&self, index: &Index) -> Result<(), String> {
        let (want, have) = (&self.config, &index.config);
        if want != have {
            return Err(format!(
                "it was built for branch `{}`, library `{}`, policies `{}` and trust {:?}, \
                 not branch `{}`, library `{}`, policies `{}` and trust {:?}",
                have.branch,
                have.library,
                have.policies,
                have.trust,
                want.branch,
                want.library,
                want.policies,
                want.trust
            ));
        }
        if index.last_commit.is_none() {
            return Err("it is empty".into());
        }
        let repo = self.repo.as_ref().ok_or("the repository is not open")?;
        let anchor = match &self.config.trust {
            TrustAnchor::Commit(spec) => Some(
                repo.resolve_commit(spec)
                    .map_err(|e| format!("the configured trust anchor does not resolve: {e}"))?
                    .to_string(),
            ),
            TrustAnchor::RootApprovers(_) => None,
            // Not configurable for the controller; the index checks its own history.
            TrustAnchor::FirstCommit => index.anchor.clone(),
        };
        if index.anchor != anchor {
            return Err(format!(
                "its trust anchor is {} but the configured one is {}",
                index.anchor.as_deref().unwrap_or("the root approvers"),
                anchor.as_deref().unwrap_or("the root approvers")
            ));
        }
        Ok(())
    }

    fn update(&mut self) -> Result<(), SourceError> {
        self.repo()?;
        if !self.loaded {
            self.loaded = true;
            self.load_persisted();
        }
        let fresh = self.index.last_commit.is_none();
        let mut report = UpdateReport::default();
        let result = match self.repo.as_ref() {
            Some(repo) => self
                .index
                .update_into(repo, Default::default(), &mut report),
            None => return Err(err("repository not open")),
        };
        // On an error the commits before the failing one stay applied, with their events;
        // the failing commit left no trace and the next update resumes at it.
        self.absorb(fresh, report.events);
        match result {
            Ok(()) => Ok(()),
            // The controller's own guard (last reconciled commit in the state store) passed,
            // so the new history was accepted (acknowledged, or the index was persisted
            // before a rewrite that was acknowledged since): rebuild.
            Err(quiver_git::Error::Rewrite(r)) => {
                tracing::warn!("{r}; the new history was accepted: rebuilding the version index");
                self.reset();
                let mut report = UpdateReport::default();
                let result = match self.repo.as_ref() {
                    Some(repo) => self
                        .index
                        .update_into(repo, Default::default(), &mut report),
                    None => return Err(err("repository not open")),
                };
                self.absorb(true, report.events);
                result.map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }

    fn absorb(&mut self, fresh: bool, events: Vec<Event>) {
        if fresh && let Some(anchor) = &self.index.anchor {
            // The trusted commit's policy is the first one in effect (the policy in effect
            // now may be a later one, which has its own event).
            self.policy_changes.push(PolicyChange {
                commit: anchor.clone(),
                approvers: vec![],
                authors: vec![],
            });
        }
        for e in events {
            if let Event::PolicyApplied { commit, approvers } = e
                && !self.policy_changes.iter().any(|p| p.commit == commit)
            {
                self.policy_changes.push(PolicyChange {
                    commit,
                    approvers,
                    authors: vec![],
                });
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
                authors: emails(&p.authors),
            })
            .collect();
        if let Some(d) = &self.index.policy.drift {
            pending.push(PendingChange {
                script: format!("{}/", self.config.policies),
                commit: d.commit.clone(),
                state: "drifted".into(),
                reason: d.reason.clone(),
                authors: emails(&d.authors),
            });
        }
        let policy_error = self.index.policy.error.as_ref().map(|p| PolicyProblem {
            commit: p.commit.clone(),
            errors: vec![p.reason.clone()],
        });
        // Before any approved change (root approvers, empty history) the state is empty.
        let source_commit = self.index.last_approved_change.clone().unwrap_or_default();
        Ok(DesiredState {
            branch: state.branch.clone(),
            head,
            source_commit,
            policy_commit: state.policy_commit.clone().unwrap_or_default(),
            changes: self.index.approved_changes,
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
        self.persisted = None;
        self.policy_changes.clear();
    }

    fn checkpoint(&mut self) -> Result<(), SourceError> {
        let Some(path) = &self.index_file else {
            return Ok(());
        };
        if self.index.last_commit.is_none() || self.index.last_commit == self.persisted {
            return Ok(());
        }
        let bytes = self.index.to_json();
        if bytes.is_empty() {
            return Err(err("the version index did not serialize"));
        }
        crate::publish::write_atomic(path, &bytes).map_err(err)?;
        self.persisted = self.index.last_commit.clone();
        Ok(())
    }
}
