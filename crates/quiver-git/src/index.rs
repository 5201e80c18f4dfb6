//! The version index: the tracked branch's first-parent history turned into script
//! versions, each approved under the policy in effect, and a state with a reason for
//! everything that is not.
//!
//! Invariants (see docs/concepts-approvals.md for the user's view):
//! - A script's `reviewed` digest is the content of the last change to it that came
//!   through an approved change (or the trust anchor). A change becomes a version only if
//!   it is approved *and* its base (the content at the first parent) equals `reviewed`, so
//!   unapproved bytes are never laundered by a later approved change.
//! - The policy in effect for a commit is the policy of the last approved policy change
//!   before it; a policy change takes effect for later commits only.
//! - Processing is incremental: `update` walks only commits after `last_commit`, diffs the
//!   library and policy subtrees against the first parent, and reads only changed scripts.
//! - Each commit is processed in two steps: everything that can fail (git reads, policy
//!   loading) first, then the changes to the index, which cannot fail. A commit that fails
//!   leaves no trace, so an update that failed part-way can simply be retried.
//! - `approved_changes` counts the first-parent commits at which the approved (deployable)
//!   state changed, and `last_approved_change` names the last of them. Both are functions
//!   of the history alone: a cold index and one updated after every commit agree.

use crate::Error;
use crate::rawtree::RawEntry;
use crate::repo::{CommitFacts, FileRef, Person, Repo, VersionFile, short};
use crate::units::{Unit, UnitContent, UnitFinder, all_units, read_unit};
use git2::{Delta, Oid};
use quiver_core::approval::{
    ChangeContext, Evidence, ForgeReview, Judgement, Target, judge, removal_held,
};
use quiver_core::library::MANIFEST;
use quiver_core::policy::EvidenceKind;
use quiver_core::scan::Scanner;
use quiver_core::{Library, Manifest, Policy, Risk};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Version of the index's JSON format (2: `approved_changes`, authors of pending changes).
pub const INDEX_FORMAT: u32 = 2;

/// Where trust in the first policy comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum TrustAnchor {
    /// Trust on first use: the first commit of the branch is the trust anchor.
    FirstCommit,
    /// The policy and scripts at this commit (id or revision) are trusted.
    Commit(String),
    /// Until an approved policy exists, changes need one trailer approval by one of these
    /// emails (on a merge commit).
    RootApprovers(Vec<String>),
}

impl TrustAnchor {
    /// How status names it: `first-commit`, `commit` or `root-approvers`.
    pub fn label(&self) -> &'static str {
        match self {
            TrustAnchor::FirstCommit => "first-commit",
            TrustAnchor::Commit(_) => "commit",
            TrustAnchor::RootApprovers(_) => "root-approvers",
        }
    }
}

/// What to read: branch, library folder, policy folder, trust anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexConfig {
    /// Tracked branch (`main`).
    pub branch: String,
    /// Library folder in the repository (`library`).
    pub library: String,
    /// Policy folder in the repository (`policies`).
    pub policies: String,
    /// Trust anchor.
    pub trust: TrustAnchor,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            branch: "main".into(),
            library: "library".into(),
            policies: "policies".into(),
            trust: TrustAnchor::FirstCommit,
        }
    }
}

/// State of a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The content at the branch head is the latest approved version.
    Approved,
    /// The content differs from what was approved; the last approved version stays.
    Drifted,
    /// An approved change was refused (scanner deny, broken manifest, duplicate name).
    Refused,
    /// An approved change is held by the mass-removal guard.
    Held,
    /// Removed by an approved change; nothing deployable.
    Removed,
}

impl State {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Approved => "approved",
            State::Drifted => "drifted",
            State::Refused => "refused",
            State::Held => "held",
            State::Removed => "removed",
        }
    }
}

/// What a version's approval rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// Present at the trusted commit.
    TrustAnchor,
    /// Entered through a merge commit.
    Merge,
    /// Merge commit with approval trailers.
    Trailers,
    /// Reviews read from the forge.
    Forge,
}

impl Basis {
    fn from_kind(k: Option<EvidenceKind>) -> Basis {
        match k {
            Some(EvidenceKind::Merge) | None => Basis::Merge,
            Some(EvidenceKind::Trailers) => Basis::Trailers,
            Some(EvidenceKind::Forge) => Basis::Forge,
        }
    }
}

/// What the scanner said about an approved version (nothing in it blocks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSummary {
    /// Warnings, as `rule at file:line`.
    pub warnings: Vec<String>,
    /// Rule ids whose findings a waiver downgraded.
    pub waived: Vec<String>,
    /// Findings of severity info (not waived).
    pub info: usize,
}

/// One approved version of a script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// 1, 2, … in order of approved changes.
    pub number: u32,
    /// Commit on the branch that brought it.
    pub commit: String,
    /// First line of that commit's message.
    pub summary: String,
    /// Authors of the change.
    pub authors: Vec<Person>,
    /// Committer of the commit.
    pub committer: Person,
    /// Member ids whose approvals counted.
    pub approvers: Vec<String>,
    /// What the approval rests on.
    pub evidence: Basis,
    /// Commit time, seconds since the epoch.
    pub time: i64,
    /// Commit time, RFC 3339 UTC.
    pub time_utc: String,
    /// Script name in this version.
    pub name: String,
    /// Risk in this version.
    pub risk: Risk,
    /// Folder (or discovered file) relative to the library root.
    pub dir: String,
    /// Content digest (see `content_digest`).
    pub digest: String,
    /// Files with their exact-byte sha256 and blob ids.
    pub files: Vec<VersionFile>,
    /// Scanner summary.
    pub scan: ScanSummary,
    /// Approvals that were not counted, and why (unknown emails, self-approval, …).
    #[serde(default)]
    pub ignored: Vec<String>,
}

/// A commit and why it matters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Commit id.
    pub commit: String,
    /// Why.
    pub reason: String,
    /// Authors of the change that commit brought (empty when not known).
    #[serde(default)]
    pub authors: Vec<Person>,
}

/// A change held by the mass-removal guard, applied if a later approved policy allows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldChange {
    /// Commit of the held change.
    pub commit: String,
    /// Scripts before it.
    pub scripts_before: usize,
    /// Scripts it removes.
    pub removed: usize,
    /// Distinct eligible approvers it carries.
    pub approvals: usize,
    /// The version it would create (`None` for a removal).
    pub version: Option<Version>,
}

/// Everything known about one script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptRecord {
    /// Display name: of the latest version, else of the content at the head, else the folder.
    pub name: String,
    /// Folder (or discovered file) relative to the library root, at the head.
    pub dir: String,
    /// Made by a discovery rule rather than a manifest.
    pub discovered: bool,
    /// Earlier folders, oldest first (the script was moved).
    pub renamed_from: Vec<String>,
    /// Approved versions, oldest first.
    pub versions: Vec<Version>,
    /// The deployable version's number.
    pub deployed: Option<u32>,
    /// Digest of the content of the last approved change (`None`: absent).
    pub reviewed: Option<String>,
    /// State when the head content is the reviewed content.
    pub settled: State,
    /// Reason for `settled` when it is not `approved`.
    pub settled_reason: Option<String>,
    /// Commit that caused `settled` (refused, held, removed).
    pub settled_commit: Option<String>,
    /// Authors of the change `settled_commit` brought.
    #[serde(default)]
    pub settled_authors: Vec<Person>,
    /// Set while the head content differs from what was reviewed: the first such commit.
    pub drift: Option<Problem>,
    /// The held change, while `settled` is `held`.
    pub held: Option<HeldChange>,
    /// Digest of the content at the last processed commit (`None`: absent).
    pub head: Option<String>,
    /// Name and risk of the content at the last processed commit, when its manifest is valid.
    pub head_name: Option<String>,
    /// Risk of the head content.
    pub head_risk: Option<Risk>,
}

impl ScriptRecord {
    fn new(unit: &Unit) -> Self {
        let key = unit.key();
        ScriptRecord {
            name: key.rsplit('/').next().unwrap_or(key).to_string(),
            dir: key.to_string(),
            discovered: matches!(unit, Unit::File(_)),
            renamed_from: Vec::new(),
            versions: Vec::new(),
            deployed: None,
            reviewed: None,
            settled: State::Removed,
            settled_reason: None,
            settled_commit: None,
            settled_authors: Vec::new(),
            drift: None,
            held: None,
            head: None,
            head_name: None,
            head_risk: None,
        }
    }

    /// The state shown to users.
    pub fn state(&self) -> State {
        if self.drift.is_some() {
            State::Drifted
        } else {
            self.settled
        }
    }

    /// Why the script is not simply approved.
    pub fn reason(&self) -> Option<String> {
        match &self.drift {
            Some(d) => Some(d.reason.clone()),
            None => self.settled_reason.clone(),
        }
    }

    /// The commit behind a non-approved state.
    pub fn pending_commit(&self) -> Option<String> {
        match &self.drift {
            Some(d) => Some(d.commit.clone()),
            None if self.settled != State::Approved => self.settled_commit.clone(),
            None => None,
        }
    }

    /// Authors of the change behind a non-approved state (see [`Self::pending_commit`]).
    pub fn pending_authors(&self) -> Vec<Person> {
        match &self.drift {
            Some(d) => d.authors.clone(),
            None if self.settled != State::Approved => self.settled_authors.clone(),
            None => Vec::new(),
        }
    }

    /// The deployable version.
    pub fn deployed_version(&self) -> Option<&Version> {
        let n = self.deployed?;
        self.versions.iter().find(|v| v.number == n)
    }

    /// A version by number.
    pub fn version(&self, n: u32) -> Option<&Version> {
        self.versions.iter().find(|v| v.number == n)
    }

    fn deployed_digest(&self) -> Option<String> {
        self.deployed_version().map(|v| v.digest.clone())
    }

    fn display_name(&self) -> String {
        if let Some(v) = self.versions.last() {
            v.name.clone()
        } else if let Some(n) = &self.head_name {
            n.clone()
        } else {
            self.dir.rsplit('/').next().unwrap_or(&self.dir).to_string()
        }
    }
}

/// The policy in effect and what happened to later policy changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    /// `first-commit`, `commit` or `root-approvers`.
    pub trust: String,
    /// Commit whose policy is in effect (`None`: the pinned root approvers' policy).
    pub commit: Option<String>,
    /// Who approved it.
    pub approvers: Vec<String>,
    /// Tree id of the reviewed policy folder (`None`: absent).
    pub reviewed: Option<String>,
    /// Tree id of the policy folder at the last processed commit.
    pub head: Option<String>,
    /// An approved policy change that does not load; the previous policy stays.
    pub error: Option<Problem>,
    /// An unapproved policy change; ignored until the content is approved or reverted.
    pub drift: Option<Problem>,
}

/// Something that happened while indexing, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A new approved version.
    Version {
        /// Script name.
        script: String,
        /// Version number.
        number: u32,
        /// Commit.
        commit: String,
        /// Who approved it.
        approvers: Vec<String>,
    },
    /// A script's state changed to drifted, refused, held or removed.
    State {
        /// Script name.
        script: String,
        /// New state.
        state: State,
        /// Commit.
        commit: String,
        /// Why.
        reason: String,
    },
    /// A policy change took effect.
    PolicyApplied {
        /// Commit.
        commit: String,
        /// Who approved it.
        approvers: Vec<String>,
    },
    /// An approved policy change does not load; the previous policy stays.
    PolicyInvalid {
        /// Commit.
        commit: String,
        /// Errors with file:line.
        reason: String,
    },
    /// An unapproved policy change was ignored.
    PolicyDrifted {
        /// Commit.
        commit: String,
        /// Why.
        reason: String,
    },
}

/// What one `update` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateReport {
    /// Commits processed.
    pub commits: usize,
    /// What happened, in order.
    pub events: Vec<Event>,
}

/// Reads forge reviews for a commit (GitHub, GitLab, Gitea); providers come later.
pub trait ForgeReviews {
    /// Reviews of the pull request that brought `commit` to the branch.
    fn reviews(&self, commit: &CommitFacts) -> Result<Vec<ForgeReview>, String>;
}

/// No forge: no reviews, so rules with `evidence = "forge"` never hold.
pub struct NoForge;

impl ForgeReviews for NoForge {
    fn reviews(&self, _commit: &CommitFacts) -> Result<Vec<ForgeReview>, String> {
        Ok(Vec::new())
    }
}

/// Options for [`Index::update_with`].
pub struct UpdateOptions<'a> {
    /// Forge review provider.
    pub forge: &'a dyn ForgeReviews,
    /// Called with (commits done, commits to do) as the walk proceeds.
    pub progress: Option<&'a mut dyn FnMut(usize, usize)>,
}

impl Default for UpdateOptions<'_> {
    fn default() -> Self {
        UpdateOptions {
            forge: &NoForge,
            progress: None,
        }
    }
}

/// Compiled, not persisted: rebuilt from git when an index is loaded.
#[derive(Default)]
struct Runtime {
    loaded: bool,
    policy: Arc<Policy>,
    scanner: Option<Arc<Scanner>>,
    /// Lowercase deployable names → record key.
    names: HashMap<String, String>,
    /// Manifests of deployable versions by digest.
    manifests: HashMap<String, Manifest>,
    /// Commits known to be reachable from the commit being processed (this run only).
    reach: std::collections::HashSet<Oid>,
    /// `reach` holds every such commit (the walk started at a root).
    reach_complete: bool,
    /// Whether the library root of this tree holds a `script.toml`.
    root_manifest: Option<(Oid, bool)>,
    /// The commit being processed changed the approved state.
    changed: bool,
    /// The last [`Index::approved_state`] and the `last_commit` it was computed at: a
    /// controller asks for it on every reconcile, and when nothing was committed the
    /// answer is the same, so it is not rebuilt (2,000 scripts took 20 ms).
    approved: Option<(Option<String>, Arc<ApprovedState>)>,
}

/// The version index of one branch of one repository. Serialize it to persist it.
#[derive(Serialize, Deserialize)]
pub struct Index {
    /// JSON format version.
    pub format: u32,
    /// What is read.
    pub config: IndexConfig,
    /// The trusted commit (`None` with root approvers).
    pub anchor: Option<String>,
    /// Last processed commit of the branch.
    pub last_commit: Option<String>,
    /// The policy in effect.
    pub policy: PolicyState,
    /// Scripts by folder (or discovered file) relative to the library root.
    pub scripts: BTreeMap<String, ScriptRecord>,
    /// Records displaced when another script moved into their folder.
    #[serde(default)]
    pub retired: Vec<ScriptRecord>,
    /// How many first-parent commits changed the approved (deployable) state: the trust
    /// anchor, every commit that creates a version or removes a deployed script, every
    /// policy change that takes effect (and what it releases). Held, refused and drifted
    /// changes do not count. The controller's catalog serial is built on it.
    pub approved_changes: u64,
    /// The last of those commits (`None` before any, e.g. with root approvers). A version
    /// released later (a held change allowed by a policy change) counts at the commit that
    /// released it, so every deployable version's commit is at or before this one.
    pub last_approved_change: Option<String>,
    #[serde(skip)]
    rt: Runtime,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("config", &self.config)
            .field("last_commit", &self.last_commit)
            .field("scripts", &self.scripts.len())
            .finish()
    }
}

/// A deployable script: its latest approved version.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovedScript {
    /// Script name.
    pub name: String,
    /// Folder relative to the library root.
    pub dir: String,
    /// The manifest of that version.
    pub manifest: Manifest,
    /// The version (files carry blob ids for [`Repo::blob`]).
    pub version: Version,
    /// The script's state (a drifted or refused script still deploys this version).
    pub state: State,
}

/// A script whose head content is not its deployable version.
#[derive(Debug, Clone, Serialize)]
pub struct ScriptProblem {
    /// Script name.
    pub name: String,
    /// Folder relative to the library root.
    pub dir: String,
    /// State (never `approved`).
    pub state: State,
    /// Why.
    pub reason: String,
    /// The commit behind it.
    pub pending_commit: Option<String>,
    /// Authors of the change that commit brought.
    pub authors: Vec<Person>,
    /// The version that stays deployed, if any.
    pub deployed: Option<u32>,
}

/// What the controller publishes from.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovedState {
    /// Branch.
    pub branch: String,
    /// Last processed commit.
    pub head: Option<String>,
    /// Commit of the policy in effect.
    pub policy_commit: Option<String>,
    /// `first-commit`, `commit` or `root-approvers`.
    pub policy_trust: String,
    /// The policy in effect.
    #[serde(skip)]
    pub policy: Arc<Policy>,
    /// Deployable scripts in name order.
    pub scripts: Vec<ApprovedScript>,
    /// Scripts not in the approved state.
    pub problems: Vec<ScriptProblem>,
    /// Policy problems (an invalid approved change, an unapproved change).
    pub policy_problems: Vec<Problem>,
}

/// Per-commit facts computed once, on first need.
struct CommitCtx {
    facts: CommitFacts,
    evidence: Evidence,
    change: ChangeContext,
    authors: Vec<Person>,
}

/// One script's change in one commit.
struct Change {
    unit: Unit,
    old: Option<String>,
    new: Option<UnitContent>,
}

enum Outcome {
    Version(Box<Version>),
    Refused(String),
}

/// A judged policy change, read but not yet recorded.
struct PolicyPlan {
    /// Tree id of the policy folder at the commit.
    new: Option<String>,
    judgement: Judgement,
    /// The policy content before it was approved.
    base_ok: bool,
    /// Why the approved policy does not load.
    load_errors: Option<Vec<String>>,
}

/// An approved policy that loads, ready to take effect.
struct NextPolicy {
    policy: Policy,
    approvers: Vec<String>,
    /// Its scanner, or why its rules do not compile.
    scanner: Result<Scanner, String>,
    /// Set when its discovery rules differ from the policy before.
    rediscovery: Option<Rediscovery>,
}

/// What changed discovery rules claim, read ahead.
struct Rediscovery {
    /// Every script of the library under the new rules, in order.
    units: Vec<Unit>,
    /// Content of the discovered files that may need a record.
    contents: HashMap<Unit, UnitContent>,
}

/// A commit's script changes, read but not yet applied.
struct LibraryPlan {
    /// Whether the library root holds a manifest at the commit.
    root_manifest: Option<(Oid, bool)>,
    /// Scripts whose folder moved (old → new).
    renames: BTreeMap<Unit, Unit>,
    /// Every script the commit touches.
    affected: BTreeSet<Unit>,
    /// Their content at the commit (`None`: absent).
    contents: BTreeMap<Unit, Option<UnitContent>>,
}

impl LibraryPlan {
    /// Record keys whose record the change may replace, move or drop.
    fn touched(&self) -> HashSet<String> {
        self.affected
            .iter()
            .chain(self.renames.iter().flat_map(|(a, b)| [a, b]))
            .map(|u| u.key().to_string())
            .collect()
    }
}

fn root_approver_policy(emails: &[String]) -> Result<Policy, Error> {
    let mut text = String::from(
        "[[role]]\nid = \"root-approver\"\npermissions = [\"approve\"]\n\n\
         [[approval]]\nid = \"root-approvers\"\npolicy = true\napprover_roles = [\"root-approver\"]\nallow_self_approval = true\n\n\
         [[approval]]\nid = \"root-approvers-scripts\"\napprover_roles = [\"root-approver\"]\nallow_self_approval = true\n",
    );
    for e in emails {
        let e = e.replace(['"', '\\'], "");
        text.push_str(&format!(
            "\n[[member]]\nid = \"{e}\"\nemails = [\"{e}\"]\nroles = [\"root-approver\"]\n"
        ));
    }
    Policy::load(&[("<root approvers>".to_string(), text)])
        .map(|l| l.policy)
        .map_err(|errs| {
            Error::Trust(
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
}

fn utc(time: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(time.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn combine(a: Judgement, b: Judgement) -> Judgement {
    let mut j = a;
    j.approved &= b.approved;
    for x in b.approvers {
        if !j.approvers.contains(&x) {
            j.approvers.push(x);
        }
    }
    j.evidence_kind = if j.approved {
        j.evidence_kind.max(b.evidence_kind)
    } else {
        None
    };
    for r in b.reasons {
        if !j.reasons.contains(&r) {
            j.reasons.push(r);
        }
    }
    for r in b.ignored {
        if !j.ignored.contains(&r) {
            j.ignored.push(r);
        }
    }
    j
}

impl Index {
    /// An empty index; [`Index::update`] fills it.
    pub fn new(config: IndexConfig) -> Index {
        Index {
            format: INDEX_FORMAT,
            policy: PolicyState {
                trust: config.trust.label().to_string(),
                ..Default::default()
            },
            config,
            anchor: None,
            last_commit: None,
            scripts: BTreeMap::new(),
            retired: Vec::new(),
            approved_changes: 0,
            last_approved_change: None,
            rt: Runtime::default(),
        }
    }

    /// Reads a persisted index (JSON).
    pub fn from_json(bytes: &[u8]) -> Result<Index, Error> {
        let index: Index =
            serde_json::from_slice(bytes).map_err(|e| Error::IndexFormat(e.to_string()))?;
        if index.format != INDEX_FORMAT {
            return Err(Error::IndexFormat(format!(
                "index format {} is not {INDEX_FORMAT}; rebuild it",
                index.format
            )));
        }
        Ok(index)
    }

    /// The index as JSON, to persist it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Processes the commits added to the branch since the last update.
    pub fn update(&mut self, repo: &Repo) -> Result<UpdateReport, Error> {
        self.update_with(repo, UpdateOptions::default())
    }

    /// [`Index::update`] with a forge provider and progress callback. Fails with
    /// [`Error::Rewrite`] (and changes nothing) when the last processed commit is no longer
    /// on the branch's first-parent line.
    pub fn update_with(
        &mut self,
        repo: &Repo,
        opts: UpdateOptions<'_>,
    ) -> Result<UpdateReport, Error> {
        let mut report = UpdateReport::default();
        self.update_into(repo, opts, &mut report)?;
        Ok(report)
    }

    /// [`Index::update_with`], reporting into `report` as it goes. When a commit fails,
    /// the commits before it stay applied (`last_commit` names the last of them) and their
    /// events stay in `report`; the failed commit leaves no trace, so the next update
    /// resumes at it. Nothing needs to be rebuilt after an error.
    pub fn update_into(
        &mut self,
        repo: &Repo,
        mut opts: UpdateOptions<'_>,
        report: &mut UpdateReport,
    ) -> Result<(), Error> {
        let head = repo.branch_head(&self.config.branch)?;
        let head_s = head.to_string();
        if self.last_commit.as_deref() == Some(head_s.as_str()) {
            return Ok(());
        }
        self.rt.reach.clear();
        self.rt.reach_complete = false;
        self.rt.approved = None;
        let commits = match &self.last_commit {
            None => match self.initialize(repo, head) {
                Ok(commits) => commits,
                Err(e) => {
                    // Half a trust anchor is no anchor: start from nothing next time.
                    *self = Index::new(self.config.clone());
                    return Err(e);
                }
            },
            Some(last) => {
                let last_oid = Oid::from_str(last)?;
                match repo.first_parent_line(head, Some(last_oid))? {
                    Some(line) => line,
                    None => {
                        return Err(Error::Rewrite(crate::Rewrite {
                            last: last.clone(),
                            head: head_s,
                        }));
                    }
                }
            }
        };
        self.ensure_runtime(repo)?;
        let total = commits.len();
        for (i, c) in commits.iter().enumerate() {
            // While every commit since a root has been seen, remember them all, so that
            // the commits a merge brings in are found by a walk that stops at known ones.
            let walk = if self.rt.reach_complete {
                let parents: Vec<Oid> = repo.git().find_commit(*c)?.parent_ids().collect();
                let walk = repo.merge_walk(&parents, &self.rt.reach, true)?;
                self.rt.reach.insert(*c);
                self.rt.reach.extend(walk.commits.iter().map(|(o, _)| *o));
                self.rt.reach_complete = walk.complete;
                Some(walk)
            } else {
                None
            };
            self.process(repo, *c, walk, opts.forge, report)?;
            self.last_commit = Some(c.to_string());
            report.commits += 1;
            if let Some(p) = opts.progress.as_mut() {
                p(i + 1, total);
            }
        }
        if self.last_commit.is_none() {
            self.last_commit = Some(head_s);
        }
        Ok(())
    }

    /// Sets up the trust anchor; returns the commits to process after it.
    fn initialize(&mut self, repo: &Repo, head: Oid) -> Result<Vec<Oid>, Error> {
        let line = repo.first_parent_line(head, None)?.unwrap_or_default();
        self.policy.trust = self.config.trust.label().to_string();
        let anchor = match &self.config.trust {
            TrustAnchor::RootApprovers(emails) => {
                let policy = root_approver_policy(emails)?;
                self.set_runtime_policy(policy)?;
                self.rt.reach_complete = true;
                return Ok(line);
            }
            TrustAnchor::FirstCommit => line[0],
            TrustAnchor::Commit(spec) => {
                let oid = repo.resolve_commit(spec)?;
                if !line.contains(&oid) {
                    return Err(Error::Trust(format!(
                        "trusted commit {spec} is not on the first-parent history of `{}`",
                        self.config.branch
                    )));
                }
                oid
            }
        };
        let pos = line.iter().position(|c| *c == anchor).unwrap_or(0);
        if pos == 0 && repo.git().find_commit(anchor)?.parent_count() == 0 {
            self.rt.reach.insert(anchor);
            self.rt.reach_complete = true;
        }
        let tree = repo.commit_tree(anchor)?;
        let pol_tree = repo.subtree_id(&tree, &self.config.policies);
        let policy = repo
            .load_policy(pol_tree, &self.config.policies)?
            .map_err(|errs| {
                Error::Trust(format!(
                    "the policy at the trusted commit {} does not load: {}",
                    short(&anchor),
                    errs.join("; ")
                ))
            })?;
        self.set_runtime_policy(policy)?;
        self.anchor = Some(anchor.to_string());
        self.policy.commit = Some(anchor.to_string());
        self.policy.reviewed = pol_tree.map(|t| t.to_string());
        self.policy.head = self.policy.reviewed.clone();
        let facts = repo.commit_facts(anchor)?;
        let authors = vec![facts.author.clone()];
        let lib_tree = repo.subtree_id(&tree, &self.config.library);
        let policy = self.rt.policy.clone();
        for (unit, files) in all_units(repo, lib_tree, &policy)? {
            let content = read_unit(repo, &unit, &files)?;
            let mut rec = ScriptRecord::new(&unit);
            let outcome = self.evaluate(&unit, &content, &facts, &[], Basis::TrustAnchor, &[]);
            self.settle_new_content(
                &mut rec,
                &unit,
                content,
                outcome,
                (&facts, &authors),
                "trust anchor",
                &mut Vec::new(),
            );
            self.scripts.insert(unit.key().to_string(), rec);
        }
        // The trusted commit is the first approved state.
        self.approved_changes = 1;
        self.last_approved_change = Some(anchor.to_string());
        self.last_commit = Some(anchor.to_string());
        Ok(line[pos + 1..].to_vec())
    }

    fn set_runtime_policy(&mut self, policy: Policy) -> Result<(), Error> {
        self.rt.policy = Arc::new(policy);
        self.rt.scanner = None;
        self.rt.loaded = true;
        Ok(())
    }

    /// The scanner of the policy in effect, compiled on first use (once per policy).
    fn scanner(&mut self) -> Option<Arc<Scanner>> {
        if self.rt.scanner.is_none() {
            match Scanner::new(&self.rt.policy) {
                Ok(s) => self.rt.scanner = Some(Arc::new(s)),
                Err(errs) => {
                    self.policy.error = Some(Problem {
                        commit: self.policy.commit.clone().unwrap_or_default(),
                        reason: format!(
                            "the scanner rules of the policy in effect do not compile: {}",
                            errs.iter()
                                .map(|e| e.to_string())
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        authors: Vec::new(),
                    });
                    return None;
                }
            }
        }
        self.rt.scanner.clone()
    }

    /// Rebuilds the compiled policy and name map of a loaded index.
    fn ensure_runtime(&mut self, repo: &Repo) -> Result<(), Error> {
        if !self.rt.loaded {
            let policy = match (&self.policy.commit, &self.config.trust) {
                (Some(c), _) => {
                    let tree = repo.commit_tree(Oid::from_str(c)?)?;
                    let pol_tree = repo.subtree_id(&tree, &self.config.policies);
                    repo.load_policy(pol_tree, &self.config.policies)?
                        .map_err(|e| {
                            Error::Trust(format!(
                                "the policy in effect (commit {c}) no longer loads: {}",
                                e.join("; ")
                            ))
                        })?
                }
                (None, TrustAnchor::RootApprovers(emails)) => root_approver_policy(emails)?,
                (None, _) => Policy::default(),
            };
            self.set_runtime_policy(policy)?;
        }
        if self.rt.names.is_empty() {
            for (k, r) in &self.scripts {
                if let Some(v) = r.deployed_version() {
                    self.rt.names.insert(v.name.to_ascii_lowercase(), k.clone());
                }
            }
        }
        Ok(())
    }

    /// The policy in effect (after `update`).
    pub fn current_policy(&self) -> Arc<Policy> {
        self.rt.policy.clone()
    }

    fn process(
        &mut self,
        repo: &Repo,
        c: Oid,
        walk: Option<crate::repo::MergeWalk>,
        forge: &dyn ForgeReviews,
        report: &mut UpdateReport,
    ) -> Result<(), Error> {
        self.rt.changed = false;
        repo.trees().rotate();
        let commit = repo.git().find_commit(c)?;
        let tree = commit.tree_id();
        let ptree = match commit.parent_id(0) {
            Ok(p) => Some(repo.git().find_commit(p)?.tree_id()),
            Err(_) => None,
        };
        let sub = |t: Option<Oid>, path: &str| -> Result<Option<Oid>, Error> {
            match t {
                Some(t) => repo.subtree(t, path),
                None => Ok(None),
            }
        };
        let lib_new = sub(Some(tree), &self.config.library)?;
        let lib_old = sub(ptree, &self.config.library)?;
        let pol_new = sub(Some(tree), &self.config.policies)?;
        let pol_old = sub(ptree, &self.config.policies)?;
        if lib_new == lib_old && pol_new == pol_old {
            return Ok(());
        }
        let facts = repo.commit_facts(c)?;
        let (lib_deltas, lib_dirs) = if lib_new != lib_old {
            collect_deltas_with_dirs(repo, lib_old, lib_new)?
        } else {
            Default::default()
        };
        let pol_deltas = if pol_new != pol_old {
            collect_deltas(repo, pol_old, pol_new)?
        } else {
            Vec::new()
        };
        let merger_wrote = facts.parents.len() < 2
            || merge_has_own_content(
                repo,
                &facts,
                &[
                    (&self.config.library, &lib_deltas),
                    (&self.config.policies, &pol_deltas),
                ],
            )?;
        let policy = self.rt.policy.clone();
        let check_sig = policy.approvals.iter().any(|a| a.require_signature);
        let mut evidence = repo.evidence(&facts, &policy, check_sig);
        if policy
            .approvals
            .iter()
            .any(|a| a.evidence == EvidenceKind::Forge)
        {
            evidence.forge_reviews = forge.reviews(&facts).unwrap_or_default();
        }
        let walk = match walk {
            Some(w) => w,
            // Stopping at known commits is exact only when they are all known.
            None => repo.merge_walk(&facts.parents, &Default::default(), false)?,
        };
        let authors = repo.change_authors(&facts, merger_wrote, &walk);
        let ctx = CommitCtx {
            change: ChangeContext {
                authors: authors.iter().map(|a| a.email.clone()).collect(),
            },
            facts,
            evidence,
            authors,
        };

        // Read: everything that can fail, before anything changes.
        let (policy_plan, next_policy) = if pol_new != pol_old {
            let (plan, loaded) = self.plan_policy_change(repo, &ctx, pol_new)?;
            (Some(plan), loaded)
        } else {
            (None, None)
        };
        let lib_plan = if lib_new != lib_old {
            let diff = LibraryDiff {
                old: lib_old,
                new: lib_new,
                deltas: &lib_deltas,
                dirs: lib_dirs,
            };
            Some(self.plan_library_change(repo, diff)?)
        } else {
            None
        };
        let next_policy = match next_policy {
            Some((p, approvers)) => {
                Some(self.plan_next_policy(repo, p, approvers, lib_new, lib_plan.as_ref())?)
            }
            None => None,
        };

        // Apply: nothing below can fail.
        if let Some(plan) = policy_plan {
            self.apply_policy_change(&ctx, plan, report);
        }
        if let Some(plan) = lib_plan {
            self.apply_library_change(&ctx, plan, report);
        }
        if let Some(next) = next_policy {
            self.apply_next_policy(&ctx, next, report);
        }
        if self.rt.changed {
            self.approved_changes += 1;
            self.last_approved_change = Some(c.to_string());
        }
        Ok(())
    }

    /// Judges a policy change and, when it is approved on an approved base, loads it
    /// (reads only). Returns the plan and the new policy with its approvers when it loads.
    #[allow(clippy::type_complexity)]
    fn plan_policy_change(
        &self,
        repo: &Repo,
        ctx: &CommitCtx,
        pol_new: Option<Oid>,
    ) -> Result<(PolicyPlan, Option<(Policy, Vec<String>)>), Error> {
        let base_ok = self.policy.head == self.policy.reviewed;
        let policy = self.rt.policy.clone();
        let j = judge(
            &policy,
            &policy.rules_for_policy(),
            Target::Policy,
            &ctx.evidence,
            &ctx.change,
        );
        let mut load_errors = None;
        let mut loaded = None;
        if j.approved && base_ok {
            match repo.load_policy(pol_new, &self.config.policies)? {
                Ok(p) => loaded = Some((p, j.approvers.clone())),
                Err(errs) => load_errors = Some(errs),
            }
        }
        let plan = PolicyPlan {
            new: pol_new.map(|t| t.to_string()),
            judgement: j,
            base_ok,
            load_errors,
        };
        Ok((plan, loaded))
    }

    /// Records a judged policy change: reviewed, drifted or invalid.
    fn apply_policy_change(
        &mut self,
        ctx: &CommitCtx,
        plan: PolicyPlan,
        report: &mut UpdateReport,
    ) {
        let PolicyPlan {
            new,
            judgement: j,
            base_ok,
            load_errors,
        } = plan;
        self.policy.head = new.clone();
        let commit = ctx.facts.oid.to_string();
        if j.approved && base_ok {
            self.policy.reviewed = new;
            self.policy.drift = None;
            if let Some(errs) = load_errors {
                let reason = format!(
                    "approved policy change {} does not load; the policy of {} stays in effect: {}",
                    ctx.facts.short(),
                    self.policy
                        .commit
                        .as_deref()
                        .map(|c| &c[..10.min(c.len())])
                        .unwrap_or("the root approvers"),
                    errs.join("; ")
                );
                self.policy.error = Some(Problem {
                    commit: commit.clone(),
                    reason: reason.clone(),
                    authors: ctx.authors_or_author(),
                });
                report.events.push(Event::PolicyInvalid { commit, reason });
            }
        } else if self.policy.head == self.policy.reviewed {
            self.policy.drift = None;
        } else if self.policy.drift.is_none() {
            let reason = if j.approved {
                format!(
                    "policy change {} is approved but builds on policy content that was never approved (from {}); it is ignored",
                    ctx.facts.short(),
                    self.policy
                        .drift
                        .as_ref()
                        .map(|d| d.commit.as_str())
                        .unwrap_or("an earlier commit")
                )
            } else {
                format!(
                    "policy change {} \"{}\" is not approved and is ignored: {}{}",
                    ctx.facts.short(),
                    ctx.facts.summary,
                    j.reasons.join("; "),
                    ignored_note(&j)
                )
            };
            self.policy.drift = Some(Problem {
                commit: commit.clone(),
                reason: reason.clone(),
                authors: ctx.authors_or_author(),
            });
            report.events.push(Event::PolicyDrifted { commit, reason });
        }
    }

    /// Compiles an approved new policy's scanner and, when its discovery rules differ,
    /// reads what they claim (reads only).
    fn plan_next_policy(
        &self,
        repo: &Repo,
        policy: Policy,
        approvers: Vec<String>,
        lib_tree: Option<Oid>,
        lib_plan: Option<&LibraryPlan>,
    ) -> Result<NextPolicy, Error> {
        let scanner = Scanner::new(&policy).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        });
        let discovery = |p: &Policy| serde_json::to_string(&p.discovery).unwrap_or_default();
        let rediscovery = if scanner.is_ok() && discovery(&self.rt.policy) != discovery(&policy) {
            let units = all_units(repo, lib_tree, &policy)?;
            // Content is needed for every discovered file without a record at the head once
            // the library change is applied: those without one now, and those it touches.
            let touched = lib_plan.map(LibraryPlan::touched).unwrap_or_default();
            let mut contents = HashMap::new();
            for (unit, files) in &units {
                let has_head = self
                    .scripts
                    .get(unit.key())
                    .is_some_and(|r| r.head.is_some());
                if matches!(unit, Unit::File(_)) && (!has_head || touched.contains(unit.key())) {
                    contents.insert(unit.clone(), read_unit(repo, unit, files)?);
                }
            }
            Some(Rediscovery {
                units: units.into_keys().collect(),
                contents,
            })
        } else {
            None
        };
        Ok(NextPolicy {
            policy,
            approvers,
            scanner,
            rediscovery,
        })
    }

    /// Puts an approved, loaded policy change into effect (or records why it cannot be).
    fn apply_next_policy(&mut self, ctx: &CommitCtx, next: NextPolicy, report: &mut UpdateReport) {
        let c = ctx.facts.oid.to_string();
        let NextPolicy {
            policy,
            approvers,
            scanner,
            rediscovery,
        } = next;
        match scanner {
            Ok(scanner) => {
                self.rt.policy = Arc::new(policy);
                self.rt.scanner = Some(Arc::new(scanner));
                self.policy.commit = Some(c.clone());
                self.policy.approvers = approvers.clone();
                self.policy.error = None;
                // Groups, targets and limits come from the policy: the catalog changes.
                self.rt.changed = true;
                report.events.push(Event::PolicyApplied {
                    commit: c,
                    approvers: approvers.clone(),
                });
                if let Some(r) = rediscovery {
                    self.rediscover(ctx, r, &approvers, report);
                }
                self.release_held(ctx, report);
            }
            Err(reason) => {
                self.policy.error = Some(Problem {
                    commit: c.clone(),
                    reason: reason.clone(),
                    authors: ctx.authors_or_author(),
                });
                report
                    .events
                    .push(Event::PolicyInvalid { commit: c, reason });
            }
        }
    }

    /// Finds the scripts a commit changed and reads their new content (reads only).
    fn plan_library_change(
        &self,
        repo: &Repo,
        diff: LibraryDiff<'_>,
    ) -> Result<LibraryPlan, Error> {
        let LibraryDiff {
            old: lib_old,
            new: lib_new,
            deltas,
            dirs,
        } = diff;
        let policy = self.rt.policy.clone();
        // Whether the library root itself is a script folder rarely changes: carry it over.
        let root_old = match self.rt.root_manifest {
            Some((tree, has)) if Some(tree) == lib_old => Some(has),
            _ => None,
        };
        let mut old_units = UnitFinder::new(repo, lib_old).with_hints(root_old, dirs.0);
        let root_new = root_old.map(|has| {
            match deltas.iter().find(|d| {
                d.old_path.as_deref() == Some(MANIFEST) || d.new_path.as_deref() == Some(MANIFEST)
            }) {
                Some(d) => d.new_path.as_deref() == Some(MANIFEST),
                None => has,
            }
        });
        let mut new_units = UnitFinder::new(repo, lib_new).with_hints(root_new, dirs.1);
        let root_manifest = match lib_new {
            Some(tree) => Some((tree, new_units.has_manifest("")?)),
            None => None,
        };
        let mut affected: BTreeSet<Unit> = BTreeSet::new();
        let mut renames: BTreeMap<Unit, Unit> = BTreeMap::new();
        let mut manifest_dirs: BTreeSet<String> = BTreeSet::new();
        for d in deltas {
            let (old_path, new_path) = (d.old_path.clone(), d.new_path.clone());
            let ou = match old_path.as_deref() {
                Some(p) => old_units.unit_of(p, &policy)?,
                None => None,
            };
            let nu = match new_path.as_deref() {
                Some(p) => new_units.unit_of(p, &policy)?,
                None => None,
            };
            for p in old_path.iter().chain(new_path.iter()) {
                if p == quiver_core::library::MANIFEST || p.ends_with("/script.toml") {
                    manifest_dirs.insert(
                        p.rsplit_once('/')
                            .map(|(d, _)| d.to_string())
                            .unwrap_or_default(),
                    );
                }
            }
            if d.status == Delta::Renamed
                && let (Some(o), Some(n), Some(op), Some(np)) = (&ou, &nu, &old_path, &new_path)
                && o != n
                && &o.anchor_path() == op
                && &n.anchor_path() == np
            {
                renames.insert(o.clone(), n.clone());
            }
            if let Some(u) = ou {
                affected.insert(u);
            }
            if let Some(u) = nu {
                affected.insert(u);
            }
        }
        // A manifest added or removed regroups the files around it.
        for dir in manifest_dirs {
            for (finder, tree) in [(&mut old_units, lib_old), (&mut new_units, lib_new)] {
                let Some(tree) = tree else { continue };
                let files = match repo.subtree(tree, &dir)? {
                    Some(id) => repo.list_files(id)?,
                    None => Vec::new(),
                };
                for f in files {
                    let p = crate::units::join(&dir, &f.path);
                    if let Some(u) = finder.unit_of(&p, &policy)? {
                        affected.insert(u);
                    }
                }
            }
        }
        // The content at this commit of every affected script (a renamed script's old
        // folder included: whether it is still there decides whether its record moves).
        let mut contents = BTreeMap::new();
        for unit in &affected {
            let new = match new_units.files(unit)? {
                Some(files) => Some(read_unit(repo, unit, &files)?),
                None => None,
            };
            contents.insert(unit.clone(), new);
        }
        Ok(LibraryPlan {
            root_manifest,
            renames,
            affected,
            contents,
        })
    }

    /// Applies a commit's script changes (see [`Self::plan_library_change`]).
    fn apply_library_change(
        &mut self,
        ctx: &CommitCtx,
        plan: LibraryPlan,
        report: &mut UpdateReport,
    ) {
        let LibraryPlan {
            root_manifest,
            renames,
            mut affected,
            mut contents,
        } = plan;
        if root_manifest.is_some() {
            self.rt.root_manifest = root_manifest;
        }
        // Move records of renamed scripts first, so their history follows them.
        for (from, to) in &renames {
            let still_there = contents.get(from).is_some_and(Option::is_some);
            if still_there || !self.scripts.contains_key(from.key()) {
                continue;
            }
            if let Some(existing) = self.scripts.get(to.key())
                && (existing.head.is_some() || existing.drift.is_some())
            {
                continue;
            }
            if let Some(displaced) = self.scripts.remove(to.key()) {
                self.retired.push(displaced);
            }
            if let Some(mut rec) = self.scripts.remove(from.key()) {
                rec.renamed_from.push(rec.dir.clone());
                rec.dir = to.key().to_string();
                if let Some(v) = rec.deployed_version() {
                    self.rt
                        .names
                        .insert(v.name.to_ascii_lowercase(), to.key().to_string());
                }
                self.scripts.insert(to.key().to_string(), rec);
            }
            affected.remove(from);
        }
        let mut changes = Vec::new();
        for unit in affected {
            let old = self.scripts.get(unit.key()).and_then(|r| r.head.clone());
            let new = contents.remove(&unit).flatten();
            if old.is_none() && new.is_none() {
                continue;
            }
            if old.as_deref() == new.as_ref().map(|n| n.digest.as_str()) {
                // Same bytes (e.g. only moved): keep the head facts, nothing to judge.
                continue;
            }
            changes.push(Change { unit, old, new });
        }
        self.apply_changes(ctx, changes, report);
    }

    /// Name and risk of a unit's content (when its manifest is usable).
    fn identify(&self, unit: &Unit, content: &UnitContent) -> Option<(String, Risk)> {
        let lib = self.assemble(content);
        lib.scripts
            .iter()
            .find(|s| match unit {
                Unit::Dir(d) => &s.dir == d,
                Unit::File(_) => true,
            })
            .map(|s| (s.name.clone(), s.manifest.risk))
    }

    fn apply_changes(&mut self, ctx: &CommitCtx, changes: Vec<Change>, report: &mut UpdateReport) {
        if changes.is_empty() {
            return;
        }
        let policy = self.rt.policy.clone();
        // Judge every change under the policy in effect: rules for the old and the new
        // name/risk both apply, so a change cannot escape a rule by renaming or
        // lowering its risk.
        let mut judged = Vec::with_capacity(changes.len());
        for ch in changes {
            let rec = self.scripts.get(ch.unit.key());
            let old_id = rec.and_then(|r| {
                r.head.as_ref().map(|_| {
                    (
                        r.head_name.clone().unwrap_or_else(|| r.display_name()),
                        r.head_risk.unwrap_or(Risk::High),
                    )
                })
            });
            let new_id = ch.new.as_ref().map(|n| {
                self.identify(&ch.unit, n).unwrap_or_else(|| {
                    (
                        rec.map(|r| r.display_name()).unwrap_or_else(|| {
                            ch.unit.key().rsplit('/').next().unwrap_or("").to_string()
                        }),
                        Risk::High,
                    )
                })
            });
            let mut j: Option<Judgement> = None;
            for (name, risk) in [old_id.clone(), new_id.clone()].into_iter().flatten() {
                if j.is_some() && old_id == new_id {
                    break;
                }
                let rules = quiver_core::approval::rules_for_script(&policy, &name, risk);
                let this = judge(
                    &policy,
                    &rules,
                    Target::Script { name: &name, risk },
                    &ctx.evidence,
                    &ctx.change,
                );
                j = Some(match j {
                    None => this,
                    Some(prev) => combine(prev, this),
                });
            }
            let j = j.unwrap_or_default();
            judged.push((ch, j, new_id));
        }
        // The mass-removal guard looks at the change as a whole.
        let removed: Vec<&Judgement> = judged
            .iter()
            .filter(|(c, _, _)| c.old.is_some() && c.new.is_none())
            .map(|(_, j, _)| j)
            .collect();
        let held = if removed.is_empty() {
            None
        } else {
            let before = self.scripts.values().filter(|r| r.head.is_some()).count();
            let approvals = removed.iter().map(|j| j.approvers.len()).min().unwrap_or(0);
            removal_held(&policy, before, removed.len(), approvals).map(|reason| {
                HeldChange {
                    commit: ctx.facts.oid.to_string(),
                    scripts_before: before,
                    removed: removed.len(),
                    approvals,
                    version: None,
                }
                .with_reason(reason)
            })
        };
        for (ch, j, new_id) in judged {
            let key = ch.unit.key().to_string();
            let mut rec = self
                .scripts
                .remove(&key)
                .unwrap_or_else(|| ScriptRecord::new(&ch.unit));
            let new_digest = ch.new.as_ref().map(|n| n.digest.clone());
            rec.head = new_digest.clone();
            rec.head_name = None;
            rec.head_risk = None;
            if let (Some((name, risk)), Some(_)) = (&new_id, &ch.new) {
                rec.head_name = Some(name.clone());
                rec.head_risk = Some(*risk);
            }
            let base_ok = ch.old == rec.reviewed;
            if j.approved && base_ok {
                let basis = Basis::from_kind(j.evidence_kind);
                match (&held, ch.new) {
                    (Some((h, reason)), new) => {
                        let version = match new {
                            Some(content) => {
                                match self.evaluate(
                                    &ch.unit,
                                    &content,
                                    &ctx.facts,
                                    &ctx.authors,
                                    basis,
                                    &j.approvers,
                                ) {
                                    Outcome::Version(v) => Some(*v),
                                    outcome @ Outcome::Refused(_) => {
                                        self.settle_new_content(
                                            &mut rec,
                                            &ch.unit,
                                            content,
                                            outcome,
                                            (&ctx.facts, &ctx.authors_or_author()),
                                            "",
                                            &mut report.events,
                                        );
                                        self.put(key, rec);
                                        continue;
                                    }
                                }
                            }
                            None => None,
                        };
                        rec.reviewed = new_digest;
                        rec.drift = None;
                        rec.settled = State::Held;
                        rec.settled_reason =
                            Some(format!("{reason} (change {})", ctx.facts.short()));
                        rec.settled_commit = Some(ctx.facts.oid.to_string());
                        rec.settled_authors = ctx.authors_or_author();
                        rec.held = Some(HeldChange {
                            version,
                            ..h.clone()
                        });
                        report.events.push(Event::State {
                            script: rec.display_name(),
                            state: State::Held,
                            commit: ctx.facts.oid.to_string(),
                            reason: reason.clone(),
                        });
                    }
                    (None, None) => {
                        let authors = ctx.authors_or_author();
                        self.remove_script(&mut rec, &key, (&ctx.facts, &authors), &j, report);
                    }
                    (None, Some(content)) => {
                        let mut outcome = self.evaluate(
                            &ch.unit,
                            &content,
                            &ctx.facts,
                            &ctx.authors,
                            basis,
                            &j.approvers,
                        );
                        if let Outcome::Version(v) = &mut outcome {
                            v.ignored = j.ignored.clone();
                        }
                        self.settle_new_content(
                            &mut rec,
                            &ch.unit,
                            content,
                            outcome,
                            (&ctx.facts, &ctx.authors_or_author()),
                            "",
                            &mut report.events,
                        );
                    }
                }
            } else if new_digest == rec.reviewed {
                rec.drift = None;
            } else if new_digest == rec.deployed_digest() {
                // Back to the deployed bytes (e.g. a refused change reverted).
                rec.drift = None;
                rec.reviewed = new_digest;
                rec.held = None;
                if rec.deployed.is_some() {
                    rec.settled = State::Approved;
                    rec.settled_reason = None;
                    rec.settled_commit = None;
                    rec.settled_authors = Vec::new();
                } else {
                    rec.settled = State::Removed;
                }
            } else if rec.drift.is_none() {
                let deployed = match rec.deployed {
                    Some(n) => format!("v{n} stays deployed"),
                    None => "nothing is deployed".to_string(),
                };
                let reason = if j.approved {
                    format!(
                        "changed by {} which is approved but builds on content that was never approved; {deployed}",
                        ctx.facts.short()
                    )
                } else {
                    format!(
                        "changed by {} \"{}\" without approval ({}){}; {deployed}",
                        ctx.facts.short(),
                        ctx.facts.summary,
                        j.reasons.join("; "),
                        ignored_note(&j)
                    )
                };
                report.events.push(Event::State {
                    script: rec.display_name(),
                    state: State::Drifted,
                    commit: ctx.facts.oid.to_string(),
                    reason: reason.clone(),
                });
                rec.drift = Some(Problem {
                    commit: ctx.facts.oid.to_string(),
                    reason,
                    authors: ctx.authors_or_author(),
                });
            } else if j.approved
                && let Some(d) = rec.drift.as_mut()
                && !d.reason.contains("later approved change")
            {
                d.reason.push_str(&format!(
                    "; the later approved change {} builds on it and is not applied",
                    ctx.facts.short()
                ));
            }
            self.put(key, rec);
        }
    }

    /// Stores a record, dropping one that never had a version and has nothing to show.
    fn put(&mut self, key: String, mut rec: ScriptRecord) {
        rec.name = rec.display_name();
        let empty = rec.versions.is_empty()
            && rec.head.is_none()
            && rec.drift.is_none()
            && rec.held.is_none()
            && rec.settled != State::Refused;
        if !empty {
            self.scripts.insert(key, rec);
        }
    }

    /// Removes a script by an approved change (`by`: the commit and its authors).
    fn remove_script(
        &mut self,
        rec: &mut ScriptRecord,
        key: &str,
        by: (&CommitFacts, &[Person]),
        j: &Judgement,
        report: &mut UpdateReport,
    ) {
        let (facts, authors) = by;
        if rec.deployed.is_some() {
            // Only a deployed script's removal changes what endpoints get.
            self.rt.changed = true;
        }
        if let Some(v) = rec.deployed_version()
            && self
                .rt
                .names
                .get(&v.name.to_ascii_lowercase())
                .map(String::as_str)
                == Some(key)
        {
            self.rt.names.remove(&v.name.to_ascii_lowercase());
        }
        rec.reviewed = None;
        rec.deployed = None;
        rec.drift = None;
        rec.held = None;
        rec.settled = State::Removed;
        let by = if j.approvers.is_empty() {
            String::new()
        } else {
            format!(", approved by {}", j.approvers.join(", "))
        };
        let reason = format!("removed by {} \"{}\"{by}", short(&facts.oid), facts.summary);
        rec.settled_reason = Some(reason.clone());
        rec.settled_commit = Some(facts.oid.to_string());
        rec.settled_authors = authors.to_vec();
        report.events.push(Event::State {
            script: rec.display_name(),
            state: State::Removed,
            commit: facts.oid.to_string(),
            reason,
        });
    }

    /// Assembles and scans approved content: a version, or why it is refused.
    fn evaluate(
        &mut self,
        unit: &Unit,
        content: &UnitContent,
        facts: &CommitFacts,
        authors: &[Person],
        basis: Basis,
        approvers: &[String],
    ) -> Outcome {
        let scanner = self.scanner();
        let lib = self.assemble(content);
        let script = lib.scripts.iter().find(|s| match unit {
            Unit::Dir(d) => &s.dir == d,
            Unit::File(_) => true,
        });
        let Some(script) = script else {
            let errors: Vec<String> = lib
                .broken
                .iter()
                .filter(|b| {
                    matches!(unit, Unit::Dir(d) if &b.dir == d) || matches!(unit, Unit::File(_))
                })
                .flat_map(|b| b.errors.iter().map(|e| e.to_string()))
                .collect();
            let why = if errors.is_empty() {
                "no usable script.toml".to_string()
            } else {
                errors.join("; ")
            };
            return Outcome::Refused(format!("manifest.invalid: {why}"));
        };
        if let Some(other) = self.rt.names.get(&script.name.to_ascii_lowercase())
            && other != unit.key()
        {
            return Outcome::Refused(format!(
                "script name `{}` is already used by the script in `{}/{other}` (names compare case-insensitively)",
                script.name, self.config.library
            ));
        }
        let findings = match scanner {
            Some(s) => s.scan_script(&self.config.library, script),
            None => Vec::new(),
        };
        let blocking: Vec<String> = findings
            .iter()
            .filter(|f| f.blocks())
            .map(|f| format!("{} at {}: {}", f.rule, f.location, f.message))
            .collect();
        if !blocking.is_empty() {
            return Outcome::Refused(blocking.join("; "));
        }
        let mut scan = ScanSummary::default();
        for f in &findings {
            if f.waiver.is_some() {
                if !scan.waived.contains(&f.rule) {
                    scan.waived.push(f.rule.clone());
                }
            } else if f.severity == quiver_core::Severity::Warn {
                scan.warnings.push(format!("{} at {}", f.rule, f.location));
            } else {
                scan.info += 1;
            }
        }
        Outcome::Version(Box::new(Version {
            number: 0,
            commit: facts.oid.to_string(),
            summary: facts.summary.clone(),
            authors: if authors.is_empty() {
                vec![facts.author.clone()]
            } else {
                authors.to_vec()
            },
            committer: facts.committer.clone(),
            approvers: approvers.to_vec(),
            evidence: basis,
            time: facts.time,
            time_utc: utc(facts.time),
            name: script.name.clone(),
            risk: script.manifest.risk,
            dir: unit.key().to_string(),
            digest: content.digest.clone(),
            files: content.files.clone(),
            scan,
            ignored: Vec::new(),
        }))
    }

    /// The content assembled under the policy in effect (once per content).
    fn assemble<'c>(&self, content: &'c UnitContent) -> &'c Library {
        content
            .assembled
            .get_or_init(|| Library::assemble(&self.config.library, &content.tree, &self.rt.policy))
    }

    /// Records the outcome of approved new content: a version, or refused.
    #[allow(clippy::too_many_arguments)]
    fn settle_new_content(
        &mut self,
        rec: &mut ScriptRecord,
        unit: &Unit,
        content: UnitContent,
        outcome: Outcome,
        by: (&CommitFacts, &[Person]),
        note: &str,
        events: &mut Vec<Event>,
    ) {
        let (facts, authors) = by;
        rec.head = Some(content.digest.clone());
        rec.reviewed = Some(content.digest.clone());
        rec.drift = None;
        rec.held = None;
        if rec.head_name.is_none()
            && let Some((n, r)) = self.identify(unit, &content)
        {
            rec.head_name = Some(n);
            rec.head_risk = Some(r);
        }
        match outcome {
            Outcome::Version(v) => {
                self.push_version(rec, unit.key(), *v, events);
            }
            Outcome::Refused(why) => {
                let keep = match rec.deployed {
                    Some(n) => format!("; v{n} stays deployed"),
                    None => String::new(),
                };
                let src = if note.is_empty() {
                    format!("change {}", short(&facts.oid))
                } else {
                    format!("{note} {}", short(&facts.oid))
                };
                let reason = format!("refused {src}: {why}{keep}");
                events.push(Event::State {
                    script: rec.display_name(),
                    state: State::Refused,
                    commit: facts.oid.to_string(),
                    reason: reason.clone(),
                });
                rec.settled = State::Refused;
                rec.settled_reason = Some(reason);
                rec.settled_commit = Some(facts.oid.to_string());
                rec.settled_authors = authors.to_vec();
            }
        }
    }

    fn push_version(
        &mut self,
        rec: &mut ScriptRecord,
        key: &str,
        mut v: Version,
        events: &mut Vec<Event>,
    ) {
        if let Some(old) = rec.deployed_version()
            && self
                .rt
                .names
                .get(&old.name.to_ascii_lowercase())
                .map(String::as_str)
                == Some(key)
        {
            self.rt.names.remove(&old.name.to_ascii_lowercase());
        }
        v.number = rec.versions.last().map_or(1, |l| l.number + 1);
        self.rt
            .names
            .insert(v.name.to_ascii_lowercase(), key.to_string());
        rec.deployed = Some(v.number);
        rec.reviewed = Some(v.digest.clone());
        rec.settled = State::Approved;
        rec.settled_reason = None;
        rec.settled_commit = None;
        rec.settled_authors = Vec::new();
        rec.drift = None;
        rec.held = None;
        self.rt.changed = true;
        events.push(Event::Version {
            script: v.name.clone(),
            number: v.number,
            commit: v.commit.clone(),
            approvers: v.approvers.clone(),
        });
        rec.name = v.name.clone();
        rec.versions.push(v);
    }

    /// A policy change altered the discovery rules: files newly claimed become scripts
    /// (their first version is approved by the policy change), dropped ones are removed.
    fn rediscover(
        &mut self,
        ctx: &CommitCtx,
        r: Rediscovery,
        approvers: &[String],
        report: &mut UpdateReport,
    ) {
        let Rediscovery {
            units,
            mut contents,
        } = r;
        let authors = ctx.authors_or_author();
        let claimed: BTreeSet<&str> = units
            .iter()
            .filter(|u| matches!(u, Unit::File(_)))
            .map(|u| u.key())
            .collect();
        let dropped: Vec<String> = self
            .scripts
            .iter()
            .filter(|(k, r)| r.discovered && r.head.is_some() && !claimed.contains(k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        let j = Judgement {
            approved: true,
            approvers: approvers.to_vec(),
            ..Default::default()
        };
        for key in dropped {
            if let Some(mut rec) = self.scripts.remove(&key) {
                rec.head = None;
                self.remove_script(&mut rec, &key, (&ctx.facts, &authors), &j, report);
                self.put(key, rec);
            }
        }
        for unit in units {
            if !matches!(unit, Unit::File(_))
                || self
                    .scripts
                    .get(unit.key())
                    .is_some_and(|r| r.head.is_some())
            {
                continue;
            }
            let Some(content) = contents.remove(&unit) else {
                // `plan_next_policy` reads every file that can get here.
                debug_assert!(false, "{} was not read ahead", unit.key());
                continue;
            };
            let mut rec = self
                .scripts
                .remove(unit.key())
                .unwrap_or_else(|| ScriptRecord::new(&unit));
            let outcome = self.evaluate(
                &unit,
                &content,
                &ctx.facts,
                &ctx.authors,
                Basis::from_kind(ctx.evidence_kind()),
                approvers,
            );
            self.settle_new_content(
                &mut rec,
                &unit,
                content,
                outcome,
                (&ctx.facts, &authors),
                "claimed by a discovery rule in policy change",
                &mut report.events,
            );
            self.put(unit.key().to_string(), rec);
        }
    }

    /// Applies held changes that the policy now in effect allows. A held version keeps
    /// the commit that brought it (its authors and approvers); it becomes deployable at
    /// the policy change, which is where the approved state changes.
    fn release_held(&mut self, ctx: &CommitCtx, report: &mut UpdateReport) {
        let policy = self.rt.policy.clone();
        let keys: Vec<String> = self
            .scripts
            .iter()
            .filter(|(_, r)| r.settled == State::Held && r.drift.is_none() && r.held.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(mut rec) = self.scripts.remove(&key) else {
                continue;
            };
            let Some(h) = rec.held.clone() else { continue };
            if removal_held(&policy, h.scripts_before, h.removed, h.approvals).is_none() {
                match h.version {
                    Some(v) => self.push_version(&mut rec, &key, v, &mut report.events),
                    None => {
                        let j = Judgement {
                            approved: true,
                            ..Default::default()
                        };
                        let held_commit = h.commit.clone();
                        let authors = ctx.authors_or_author();
                        self.remove_script(&mut rec, &key, (&ctx.facts, &authors), &j, report);
                        rec.settled_reason = Some(format!(
                            "removed by {} (held, then allowed by policy change {})",
                            &held_commit[..10.min(held_commit.len())],
                            ctx.facts.short()
                        ));
                    }
                }
            }
            self.put(key, rec);
        }
    }

    /// The record of a script by name (case-insensitive) or folder.
    pub fn script(&self, name_or_dir: &str) -> Option<&ScriptRecord> {
        self.scripts
            .get(name_or_dir)
            .or_else(|| self.scripts.values().find(|r| r.name == name_or_dir))
            .or_else(|| {
                self.scripts
                    .values()
                    .find(|r| r.name.eq_ignore_ascii_case(name_or_dir))
            })
            .or_else(|| {
                self.scripts
                    .values()
                    .find(|r| r.renamed_from.iter().any(|d| d == name_or_dir))
            })
    }

    /// Files of a script at any commit (its folder then, following moves), or `None` if
    /// it did not exist there.
    pub fn files_at(
        &self,
        repo: &Repo,
        record: &ScriptRecord,
        commit: Oid,
    ) -> Result<Option<Vec<FileRef>>, Error> {
        let tree = repo.git().find_commit(commit)?.tree_id();
        let lib = repo.subtree(tree, &self.config.library)?;
        let mut finder = UnitFinder::new(repo, lib);
        for dir in std::iter::once(&record.dir).chain(record.renamed_from.iter().rev()) {
            let unit = if record.discovered {
                Unit::File(dir.clone())
            } else {
                Unit::Dir(dir.clone())
            };
            if let Some(files) = finder.files(&unit)? {
                return Ok(Some(files));
            }
        }
        Ok(None)
    }

    /// What the controller publishes from: every deployable script's latest approved
    /// version with its manifest, and the scripts that are not approved, with reasons.
    ///
    /// The result is kept until the index moves to another commit, so asking again when
    /// nothing changed costs a pointer copy.
    pub fn approved_state(&mut self, repo: &Repo) -> Result<Arc<ApprovedState>, Error> {
        if let Some((at, state)) = &self.rt.approved
            && *at == self.last_commit
        {
            return Ok(state.clone());
        }
        let state = Arc::new(self.build_approved_state(repo)?);
        self.rt.approved = Some((self.last_commit.clone(), state.clone()));
        Ok(state)
    }

    fn build_approved_state(&mut self, repo: &Repo) -> Result<ApprovedState, Error> {
        self.ensure_runtime(repo)?;
        let mut scripts = Vec::new();
        let mut problems = Vec::new();
        for rec in self.scripts.values() {
            let state = rec.state();
            if state != State::Approved {
                problems.push(ScriptProblem {
                    name: rec.name.clone(),
                    dir: rec.dir.clone(),
                    state,
                    reason: rec.reason().unwrap_or_default(),
                    pending_commit: rec.pending_commit(),
                    authors: rec.pending_authors(),
                    deployed: rec.deployed,
                });
            }
            let Some(v) = rec.deployed_version() else {
                continue;
            };
            let manifest = match self.rt.manifests.get(&v.digest) {
                Some(m) => m.clone(),
                None => {
                    let unit = if rec.discovered {
                        Unit::File(v.dir.clone())
                    } else {
                        Unit::Dir(v.dir.clone())
                    };
                    let refs: Vec<FileRef> = v
                        .files
                        .iter()
                        .map(|f| FileRef {
                            path: f.path.clone(),
                            mode: f.mode,
                            oid: f.blob.clone(),
                        })
                        .collect();
                    let content = read_unit(repo, &unit, &refs)?;
                    let lib =
                        Library::assemble(&self.config.library, &content.tree, &self.rt.policy);
                    let Some(s) = lib.scripts.into_iter().next() else {
                        problems.push(ScriptProblem {
                            name: rec.name.clone(),
                            dir: rec.dir.clone(),
                            state: State::Refused,
                            reason: format!(
                                "v{} no longer assembles under the policy in effect",
                                v.number
                            ),
                            pending_commit: None,
                            authors: Vec::new(),
                            deployed: rec.deployed,
                        });
                        continue;
                    };
                    self.rt
                        .manifests
                        .insert(v.digest.clone(), s.manifest.clone());
                    s.manifest
                }
            };
            scripts.push(ApprovedScript {
                name: v.name.clone(),
                dir: rec.dir.clone(),
                manifest,
                version: v.clone(),
                state,
            });
        }
        scripts.sort_by(|a, b| a.name.cmp(&b.name));
        problems.sort_by(|a, b| a.name.cmp(&b.name));
        let policy_problems = self
            .policy
            .error
            .iter()
            .chain(self.policy.drift.iter())
            .cloned()
            .collect();
        Ok(ApprovedState {
            branch: self.config.branch.clone(),
            head: self.last_commit.clone(),
            policy_commit: self.policy.commit.clone(),
            policy_trust: self.policy.trust.clone(),
            policy: self.rt.policy.clone(),
            scripts,
            problems,
            policy_problems,
        })
    }
}

impl HeldChange {
    fn with_reason(self, reason: String) -> (HeldChange, String) {
        (self, reason)
    }
}

impl CommitCtx {
    /// The authors of the change, or the commit's author when none were found.
    fn authors_or_author(&self) -> Vec<Person> {
        if self.authors.is_empty() {
            vec![self.facts.author.clone()]
        } else {
            self.authors.clone()
        }
    }

    fn evidence_kind(&self) -> Option<EvidenceKind> {
        if self.evidence.is_merge {
            Some(if self.evidence.trailers.is_empty() {
                EvidenceKind::Merge
            } else {
                EvidenceKind::Trailers
            })
        } else {
            None
        }
    }
}

/// One changed path of a subtree diff (paths relative to the subtree).
pub(crate) struct DeltaInfo {
    status: Delta,
    old_path: Option<String>,
    new_path: Option<String>,
    old_oid: Option<Oid>,
    new_oid: Option<Oid>,
}

/// The changes between two versions of a subtree. Trees are compared entry by entry and
/// equal subtree ids are skipped, so the cost is the size of the change; renames are
/// looked for only when something was both added and deleted (see [`find_renames`]).
fn collect_deltas(
    repo: &Repo,
    old: Option<Oid>,
    new: Option<Oid>,
) -> Result<Vec<DeltaInfo>, Error> {
    Ok(collect_deltas_with_dirs(repo, old, new)?.0)
}

/// The library folder's change in one commit.
struct LibraryDiff<'d> {
    old: Option<Oid>,
    new: Option<Oid>,
    deltas: &'d [DeltaInfo],
    dirs: DirHints,
}

/// How a path changed between two trees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathChange {
    /// `A`dded, `D`eleted, `M`odified or `R`enamed.
    pub status: char,
    /// Path on the old side.
    pub old_path: Option<String>,
    /// Path on the new side.
    pub new_path: Option<String>,
}

/// The file changes between two trees (paths relative to them), renames paired as the
/// index pairs them. Exposed for tests and tools; the index uses the same code.
pub fn diff_trees(
    repo: &Repo,
    old: Option<Oid>,
    new: Option<Oid>,
) -> Result<Vec<PathChange>, Error> {
    Ok(collect_deltas(repo, old, new)?
        .into_iter()
        .map(|d| PathChange {
            status: match d.status {
                Delta::Added => 'A',
                Delta::Deleted => 'D',
                Delta::Renamed => 'R',
                _ => 'M',
            },
            old_path: d.old_path,
            new_path: d.new_path,
        })
        .collect())
}

/// Subtree ids by folder on the old and new side, for the folders a diff descended into.
type DirHints = (HashMap<String, Oid>, HashMap<String, Oid>);

fn collect_deltas_with_dirs(
    repo: &Repo,
    old: Option<Oid>,
    new: Option<Oid>,
) -> Result<(Vec<DeltaInfo>, DirHints), Error> {
    let mut out = Vec::new();
    let mut dirs = DirHints::default();
    tree_changes(repo, old, new, "", &mut out, &mut dirs)?;
    let added = out.iter().any(|d| d.status == Delta::Added);
    let deleted = out.iter().any(|d| d.status == Delta::Deleted);
    if added && deleted {
        find_renames(repo, &mut out)?;
    }
    Ok((out, dirs))
}

/// Largest file compared for inexact renames.
const RENAME_MAX_SIZE: usize = 256 * 1024;
/// At most this many added × deleted pairs are compared by content.
const RENAME_MAX_PAIRS: usize = 10_000;

/// Pairs deleted and added files into renames, as git does: identical blobs first, then
/// the most similar content (at least 50 % of lines in common, `similar`'s ratio) among
/// files with the same name, then among all. A moved script folder is found through its
/// `script.toml`, even when the manifest changed on the way.
fn find_renames(repo: &Repo, deltas: &mut Vec<DeltaInfo>) -> Result<(), Error> {
    let deleted: Vec<usize> = (0..deltas.len())
        .filter(|&i| deltas[i].status == Delta::Deleted)
        .collect();
    let added: Vec<usize> = (0..deltas.len())
        .filter(|&i| deltas[i].status == Delta::Added)
        .collect();
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut used_old: HashSet<usize> = HashSet::new();
    let mut used_new: HashSet<usize> = HashSet::new();
    // Exact: same blob id.
    let mut by_id: HashMap<Oid, Vec<usize>> = HashMap::new();
    for &d in &deleted {
        if let Some(id) = deltas[d].old_oid {
            by_id.entry(id).or_default().push(d);
        }
    }
    let name = |p: &Option<String>| {
        p.as_deref()
            .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
    };
    for &a in &added {
        let Some(id) = deltas[a].new_oid else {
            continue;
        };
        if let Some(cands) = by_id.get_mut(&id) {
            // Prefer the same file name.
            let pos = cands
                .iter()
                .position(|&d| name(&deltas[d].old_path) == name(&deltas[a].new_path))
                .unwrap_or(0);
            if pos < cands.len() {
                let d = cands.remove(pos);
                pairs.push((d, a));
                used_old.insert(d);
                used_new.insert(a);
            }
        }
    }
    // Inexact: by content similarity, same file name first.
    let rest_old: Vec<usize> = deleted
        .iter()
        .copied()
        .filter(|d| !used_old.contains(d))
        .collect();
    let rest_new: Vec<usize> = added
        .iter()
        .copied()
        .filter(|a| !used_new.contains(a))
        .collect();
    if !rest_old.is_empty()
        && !rest_new.is_empty()
        && rest_old.len() * rest_new.len() <= RENAME_MAX_PAIRS
    {
        let text = |id: Option<Oid>| -> Option<String> {
            let blob = repo.git().find_blob(id?).ok()?;
            (blob.size() <= RENAME_MAX_SIZE && !blob.is_binary())
                .then(|| String::from_utf8_lossy(blob.content()).into_owned())
        };
        let olds: Vec<(usize, Option<String>)> = rest_old
            .iter()
            .map(|&d| (d, text(deltas[d].old_oid)))
            .collect();
        let news: Vec<(usize, Option<String>)> = rest_new
            .iter()
            .map(|&a| (a, text(deltas[a].new_oid)))
            .collect();
        let mut scored: Vec<(bool, f32, usize, usize)> = Vec::new();
        for (d, ot) in &olds {
            let Some(ot) = ot else { continue };
            for (a, nt) in &news {
                let Some(nt) = nt else { continue };
                let ratio = similar::TextDiff::from_lines(ot.as_str(), nt.as_str()).ratio();
                if ratio >= 0.5 {
                    let same_name = name(&deltas[*d].old_path) == name(&deltas[*a].new_path);
                    scored.push((same_name, ratio, *d, *a));
                }
            }
        }
        scored.sort_by(|x, y| y.0.cmp(&x.0).then(y.1.total_cmp(&x.1)));
        for (_, _, d, a) in scored {
            if used_old.contains(&d) || used_new.contains(&a) {
                continue;
            }
            used_old.insert(d);
            used_new.insert(a);
            pairs.push((d, a));
        }
    }
    if pairs.is_empty() {
        return Ok(());
    }
    let mut drop: HashSet<usize> = HashSet::new();
    for (d, a) in pairs {
        let old_path = deltas[d].old_path.clone();
        let old_oid = deltas[d].old_oid;
        let n = &mut deltas[a];
        n.status = Delta::Renamed;
        n.old_path = old_path;
        n.old_oid = old_oid;
        drop.insert(d);
    }
    let mut i = 0;
    deltas.retain(|_| {
        let keep = !drop.contains(&i);
        i += 1;
        keep
    });
    Ok(())
}

/// Orders entries as git does: a tree's name compares as if it ended with `/`.
fn git_order(a: &RawEntry<'_>, b: &RawEntry<'_>) -> std::cmp::Ordering {
    crate::rawtree::git_cmp(a.name, a.is_tree(), b.name, b.is_tree())
}

fn tree_changes(
    repo: &Repo,
    old: Option<Oid>,
    new: Option<Oid>,
    prefix: &str,
    out: &mut Vec<DeltaInfo>,
    dirs: &mut DirHints,
) -> Result<(), Error> {
    if old == new {
        return Ok(());
    }
    if !prefix.is_empty() {
        if let Some(o) = old {
            dirs.0.insert(prefix.to_string(), o);
        }
        if let Some(n) = new {
            dirs.1.insert(prefix.to_string(), n);
        }
    }
    let git = repo.git();
    let a = old.map(|t| repo.trees().read(git, t)).transpose()?;
    let b = new.map(|t| repo.trees().read(git, t)).transpose()?;
    let ab: &[u8] = a.as_deref().map_or(&[], |t| t.bytes());
    let bb: &[u8] = b.as_deref().map_or(&[], |t| t.bytes());
    // Unchanged entries are byte-identical and at the same offsets up to the first change:
    // skip that common prefix entry by entry (one memchr each, no parsing).
    let common = ab.iter().zip(bb.iter()).take_while(|(x, y)| x == y).count();
    let mut off = 0;
    while let Some(nul) = memchr::memchr(0, &ab[off..]) {
        let end = off + nul + 21;
        if end > common {
            break;
        }
        off = end;
    }
    let mut xs = crate::rawtree::entries(&ab[off..]);
    let mut ys = crate::rawtree::entries(&bb[off..]);
    let (mut x, mut y) = (xs.next(), ys.next());
    let path = |e: &RawEntry<'_>| crate::units::join(prefix, &e.name_str());
    loop {
        let ord = match (&x, &y) {
            (Some(x), Some(y)) => git_order(x, y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match (ord, x, y) {
            (std::cmp::Ordering::Equal, Some(xe), Some(ye)) => {
                if xe.id != ye.id || xe.mode != ye.mode {
                    if xe.is_tree() && ye.is_tree() {
                        tree_changes(repo, Some(xe.oid()), Some(ye.oid()), &path(&xe), out, dirs)?;
                    } else {
                        out.push(DeltaInfo {
                            status: Delta::Modified,
                            old_path: Some(path(&xe)),
                            new_path: Some(path(&ye)),
                            old_oid: Some(xe.oid()),
                            new_oid: Some(ye.oid()),
                        });
                    }
                } else if xs.rest() == ys.rest() {
                    // Everything after an unchanged entry is unchanged too.
                    break;
                }
                x = xs.next();
                y = ys.next();
            }
            (std::cmp::Ordering::Less, Some(xe), _) => {
                if xe.is_tree() {
                    tree_changes(repo, Some(xe.oid()), None, &path(&xe), out, dirs)?;
                } else {
                    out.push(DeltaInfo {
                        status: Delta::Deleted,
                        old_path: Some(path(&xe)),
                        new_path: None,
                        old_oid: Some(xe.oid()),
                        new_oid: None,
                    });
                }
                x = xs.next();
            }
            (_, _, Some(ye)) => {
                if ye.is_tree() {
                    tree_changes(repo, None, Some(ye.oid()), &path(&ye), out, dirs)?;
                } else {
                    out.push(DeltaInfo {
                        status: Delta::Added,
                        old_path: None,
                        new_path: Some(path(&ye)),
                        old_oid: None,
                        new_oid: Some(ye.oid()),
                    });
                }
                y = ys.next();
            }
            _ => break,
        }
    }
    Ok(())
}

/// Whether a merge commit carries content of its own in these subtrees: a changed path
/// whose bytes at the merge match none of the merged parents (a conflict resolution or an
/// edit made while merging). Only then is the merger an author of the change.
fn merge_has_own_content(
    repo: &Repo,
    facts: &CommitFacts,
    areas: &[(&String, &Vec<DeltaInfo>)],
) -> Result<bool, Error> {
    let git = repo.git();
    let mut others = Vec::new();
    for p in &facts.parents[1..] {
        others.push(git.find_commit(*p)?.tree_id());
    }
    let blob_in = |tree: Oid, path: &str| -> Result<Option<Oid>, Error> {
        Ok(repo.file_at(tree, path)?.map(|(o, _)| o))
    };
    let merge_tree = git.find_commit(facts.oid)?.tree_id();
    for (root, deltas) in areas {
        if deltas.is_empty() {
            continue;
        }
        // The usual case: the merge took the whole folder from a merged parent.
        let mine = repo.subtree(merge_tree, root)?;
        let mut same = false;
        for t in &others {
            same |= repo.subtree(*t, root)? == mine;
        }
        if same {
            continue;
        }
        for d in deltas.iter() {
            let Some(path) = d.new_path.as_deref().or(d.old_path.as_deref()) else {
                continue;
            };
            let full = crate::units::join(root.trim_matches('/'), path);
            let mut taken = false;
            for t in &others {
                if blob_in(*t, &full)? == d.new_oid {
                    taken = true;
                    break;
                }
            }
            if !taken {
                return Ok(true);
            }
            if d.status == Delta::Renamed
                && let Some(old) = d.old_path.as_deref()
            {
                let full_old = crate::units::join(root.trim_matches('/'), old);
                let mut everywhere = true;
                for t in &others {
                    everywhere &= blob_in(*t, &full_old)?.is_some();
                }
                if everywhere {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

fn ignored_note(j: &Judgement) -> String {
    if j.ignored.is_empty() {
        String::new()
    } else {
        format!("; not counted: {}", j.ignored.join("; "))
    }
}
