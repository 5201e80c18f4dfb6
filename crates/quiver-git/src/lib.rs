//! Reads a script library out of git: the tracked branch's first-parent history, the
//! changes of each commit, their approval evidence, and the resulting version index.
//!
//! Code map:
//! - [`repo`]: the git edge (git2). Opens a repository, walks the first-parent line, reads
//!   trees and blobs from the object database (never a work tree), collects evidence.
//! - [`units`]: which files form which script, answered per changed path.
//! - [`index`]: the version index; [`Index::update`] processes new commits, judging each
//!   change with `quiver_core::approval` under the policy in effect.
//! - [`sig`]: SSHSIG verification of signed merge commits.
//! - [`diff`]: unified diffs between two contents of a script, for `quiver diff`.
//!
//! ```no_run
//! use quiver_git::{Index, IndexConfig, Repo};
//! let repo = Repo::open("/srv/library.git")?;
//! let mut index = Index::new(IndexConfig::default());
//! index.update(&repo)?;
//! let state = index.approved_state(&repo)?;
//! for s in &state.scripts {
//!     for f in &s.version.files {
//!         let bytes = repo.blob(&f.blob)?;
//!         assert_eq!(bytes.len() as u64, f.size);
//!     }
//! }
//! # Ok::<(), quiver_git::Error>(())
//! ```
#![deny(missing_docs)]

pub mod diff;
pub mod index;
pub mod rawtree;
pub mod repo;
pub mod sig;
pub mod units;

pub use index::{
    ApprovedScript, ApprovedState, Basis, Event, ForgeReviews, Index, IndexConfig, NoForge,
    PathChange, Problem, ScriptProblem, ScriptRecord, State, TrustAnchor, UpdateOptions,
    UpdateReport, Version, diff_trees,
};
pub use repo::{CommitFacts, FileRef, Person, Repo, VersionFile, content_digest};

use serde::Serialize;

/// The tracked branch no longer contains the last reconciled commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rewrite {
    /// The last reconciled commit.
    pub last: String,
    /// The branch head now.
    pub head: String,
}

impl std::fmt::Display for Rewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the branch was rewritten: the last reconciled commit {} is not on the first-parent history of the head {}; \
             nothing moves until an operator accepts the new history",
            self.last, self.head
        )
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository could not be opened.
    #[error("cannot open the git repository at {path}: {}", source.message())]
    Open {
        /// Path given.
        path: String,
        /// Cause.
        source: git2::Error,
    },
    /// The branch does not exist.
    #[error(
        "branch `{branch}` not found (looked for refs/heads/{branch} and refs/remotes/origin/{branch}); name the tracked branch with `--branch` (CLI) or `[repository] branch` (controller config)"
    )]
    NoBranch {
        /// Branch name.
        branch: String,
    },
    /// A revision did not resolve to a commit.
    #[error("`{spec}` is not a commit of this repository: {}", source.message())]
    BadRevision {
        /// What was given.
        spec: String,
        /// Cause.
        source: git2::Error,
    },
    /// The trust anchor is unusable.
    #[error("trust anchor: {0}")]
    Trust(String),
    /// The branch was rewritten.
    #[error("{0}")]
    Rewrite(Rewrite),
    /// A policy file is not UTF-8.
    #[error("{path}: not UTF-8")]
    PolicyNotUtf8 {
        /// File.
        path: String,
    },
    /// A persisted index could not be read.
    #[error("index: {0}")]
    IndexFormat(String),
    /// Any other git error.
    #[error("git: {}", .0.message())]
    Git(#[from] git2::Error),
}

/// Checks that `last_reconciled` is still an ancestor of the branch head (or the head
/// itself); a rewrite is [`Error::Rewrite`].
pub fn detect_rewrite(repo: &Repo, branch: &str, last_reconciled: &str) -> Result<(), Error> {
    let head = repo.branch_head(branch)?;
    let rewrite = || {
        Error::Rewrite(Rewrite {
            last: last_reconciled.to_string(),
            head: head.to_string(),
        })
    };
    let Ok(last) = git2::Oid::from_str(last_reconciled) else {
        return Err(rewrite());
    };
    if head == last {
        return Ok(());
    }
    if repo.git().find_commit(last).is_err() {
        return Err(rewrite());
    }
    match repo.git().graph_descendant_of(head, last) {
        Ok(true) => Ok(()),
        _ => Err(rewrite()),
    }
}
