//! The git edge: open a repository, walk a branch's first-parent line, read trees and
//! blobs from the object database (never a work tree), and collect approval evidence.

use crate::Error;
use crate::sig;
use git2::{Oid, Repository, Tree};
use quiver_core::approval::{Evidence, Trailer};
use quiver_core::{FileTree, Policy, TreeEntry};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// How many commits a merge may bring in before the author walk stops (the authors found
/// so far are used; the cap keeps one huge merge from stalling the index).
pub const MERGE_AUTHOR_WALK_CAP: usize = 1_000;

/// git file modes.
pub const MODE_FILE: u32 = 0o100644;
/// Executable file.
pub const MODE_EXEC: u32 = 0o100755;
/// Symbolic link.
pub const MODE_LINK: u32 = 0o120000;
/// Submodule (gitlink).
pub const MODE_GITLINK: u32 = 0o160000;

/// A person as git records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
}

impl std::fmt::Display for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

fn person(sig: &git2::Signature<'_>) -> Person {
    Person {
        name: String::from_utf8_lossy(sig.name_bytes()).into_owned(),
        email: String::from_utf8_lossy(sig.email_bytes()).into_owned(),
    }
}

/// One file of a script as stored in git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path relative to the script folder.
    pub path: String,
    /// git mode (`100644`, `100755`, `120000`, `160000`), as an integer.
    pub mode: u32,
    /// Object id (blob, or commit for a submodule).
    pub oid: String,
}

/// A file with its content identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionFile {
    /// Path relative to the script folder.
    pub path: String,
    /// sha256 of the exact blob bytes (for a submodule: of the gitlink id).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// git mode as an integer (`33188` = `0o100644`); see [`VersionFile::mode_octal`].
    pub mode: u32,
    /// git blob id, to read the bytes with [`Repo::blob`].
    pub blob: String,
}

impl VersionFile {
    /// The mode as git prints it (`100644`).
    pub fn mode_octal(&self) -> String {
        format!("{:06o}", self.mode)
    }
}

/// Content digest of a script: sha256 over its files' `mode sha256 path` lines, sorted by
/// path. Independent of the folder the script lives in, so a move keeps the digest.
pub fn content_digest(files: &[VersionFile]) -> String {
    let mut sorted: Vec<&VersionFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for f in sorted {
        h.update(format!("{:06o} {} {}\n", f.mode, f.sha256, f.path).as_bytes());
    }
    hex::encode(h.finalize())
}

/// Facts about one commit of the first-parent line.
#[derive(Debug, Clone)]
pub struct CommitFacts {
    /// Commit id.
    pub oid: Oid,
    /// First parent, if any.
    pub parent: Option<Oid>,
    /// All parents.
    pub parents: Vec<Oid>,
    /// Author.
    pub author: Person,
    /// Committer.
    pub committer: Person,
    /// Committer time, seconds since the epoch.
    pub time: i64,
    /// First line of the message.
    pub summary: String,
    /// The whole message (lossy UTF-8).
    pub message: String,
}

impl CommitFacts {
    /// Short id for messages.
    pub fn short(&self) -> String {
        short(&self.oid)
    }
}

/// First 10 hex digits of an id.
pub fn short(oid: &Oid) -> String {
    let s = oid.to_string();
    s[..10.min(s.len())].to_string()
}

/// A local git repository (bare or not), read only through its object database.
pub struct Repo {
    git: Repository,
    path: PathBuf,
    /// sha256 of blobs already read, by blob id (bounded).
    sha_cache: RefCell<HashMap<Oid, (String, u64)>>,
    /// Raw trees of the current and previous commit.
    trees: crate::rawtree::TreeCache,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo").field("path", &self.path).finish()
    }
}

const SHA_CACHE_MAX: usize = 500_000;

impl Repo {
    /// Opens the repository at `path` (a work tree, its `.git`, or a bare repository).
    pub fn open(path: impl AsRef<Path>) -> Result<Repo, Error> {
        let path = path.as_ref();
        // libgit2 re-hashes every object it reads (SHA-1 with collision detection) unless
        // told not to; git itself does not. Content integrity for endpoints comes from the
        // sha256 computed here over the exact bytes, so skip the second hash.
        git2::opts::strict_hash_verification(false);
        // Trees are read raw (see `rawtree`) and each commit is parsed a few times at
        // most: libgit2's object cache costs more in bookkeeping than it saves here.
        git2::opts::enable_caching(false);
        let git = Repository::open(path).map_err(|e| Error::Open {
            path: path.display().to_string(),
            source: e,
        })?;
        Ok(Repo {
            git,
            path: path.to_path_buf(),
            sha_cache: RefCell::new(HashMap::new()),
            trees: Default::default(),
        })
    }

    /// The git2 repository, for callers that need more.
    pub fn git(&self) -> &Repository {
        &self.git
    }

    /// Where it was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The commit a branch points at (`main`, or a full ref such as `refs/remotes/origin/main`).
    pub fn branch_head(&self, branch: &str) -> Result<Oid, Error> {
        let candidates = if branch.starts_with("refs/") {
            vec![branch.to_string()]
        } else {
            vec![
                format!("refs/heads/{branch}"),
                format!("refs/remotes/origin/{branch}"),
            ]
        };
        for r in &candidates {
            if let Ok(oid) = self.git.refname_to_id(r) {
                return Ok(oid);
            }
        }
        Err(Error::NoBranch {
            branch: branch.to_string(),
        })
    }

    /// Resolves a commit-ish (full or abbreviated id, ref, `HEAD~2`) to a commit id.
    pub fn resolve_commit(&self, spec: &str) -> Result<Oid, Error> {
        let obj = self
            .git
            .revparse_single(spec)
            .map_err(|e| Error::BadRevision {
                spec: spec.to_string(),
                source: e,
            })?;
        let commit = obj.peel_to_commit().map_err(|e| Error::BadRevision {
            spec: spec.to_string(),
            source: e,
        })?;
        Ok(commit.id())
    }

    /// The bytes of a blob.
    pub fn blob(&self, oid: &str) -> Result<Vec<u8>, Error> {
        let oid = Oid::from_str(oid).map_err(Error::Git)?;
        Ok(self.git.find_blob(oid)?.content().to_vec())
    }

    /// Facts about a commit.
    pub fn commit_facts(&self, oid: Oid) -> Result<CommitFacts, Error> {
        let c = self.git.find_commit(oid)?;
        let message = String::from_utf8_lossy(c.message_raw_bytes()).into_owned();
        Ok(CommitFacts {
            oid,
            parent: c.parent_id(0).ok(),
            parents: c.parent_ids().collect(),
            author: person(&c.author()),
            committer: person(&c.committer()),
            time: c.committer().when().seconds(),
            summary: message.lines().next().unwrap_or("").to_string(),
            message,
        })
    }

    /// First-parent line from `head` back to (not including) `stop`, returned oldest first.
    /// `None` when `stop` is given but not on the line (the branch was rewritten).
    pub fn first_parent_line(
        &self,
        head: Oid,
        stop: Option<Oid>,
    ) -> Result<Option<Vec<Oid>>, Error> {
        let mut line = Vec::new();
        let mut cur = Some(head);
        while let Some(oid) = cur {
            if Some(oid) == stop {
                line.reverse();
                return Ok(Some(line));
            }
            line.push(oid);
            cur = self.git.find_commit(oid)?.parent_id(0).ok();
        }
        if stop.is_some() {
            return Ok(None);
        }
        line.reverse();
        Ok(Some(line))
    }

    /// The root tree of a commit.
    pub fn commit_tree(&self, oid: Oid) -> Result<Tree<'_>, Error> {
        Ok(self.git.find_commit(oid)?.tree()?)
    }

    /// The id of the tree at `path` (`library`, `a/b`) inside `tree`, if it is a tree.
    pub fn subtree_id(&self, tree: &Tree<'_>, path: &str) -> Option<Oid> {
        self.subtree(tree.id(), path).ok().flatten()
    }

    /// The id of the tree at `path` inside the tree `tree`, if it is a tree.
    pub fn subtree(&self, tree: Oid, path: &str) -> Result<Option<Oid>, Error> {
        Ok(self
            .trees
            .lookup(&self.git, tree, path)?
            .and_then(|(oid, mode)| (mode == crate::rawtree::MODE_TREE).then_some(oid)))
    }

    /// The blob (or link, or gitlink) at `path` inside the tree `tree`, with its mode.
    pub fn file_at(&self, tree: Oid, path: &str) -> Result<Option<(Oid, u32)>, Error> {
        Ok(self
            .trees
            .lookup(&self.git, tree, path)?
            .filter(|(_, mode)| *mode != crate::rawtree::MODE_TREE))
    }

    /// Raw tree cache; [`crate::rawtree::TreeCache::rotate`] it once per commit.
    pub fn trees(&self) -> &crate::rawtree::TreeCache {
        &self.trees
    }

    /// Every file under the tree `tree_id`, with paths relative to it (sorted).
    pub fn list_files(&self, tree_id: Oid) -> Result<Vec<FileRef>, Error> {
        self.trees.list_files(&self.git, tree_id)
    }

    /// sha256 and size of a blob's exact bytes (cached by blob id). For a gitlink, the
    /// sha256 of its id and size 0.
    pub fn blob_sha256(&self, oid: Oid, mode: u32) -> Result<(String, u64), Error> {
        if mode == MODE_GITLINK {
            return Ok((hex::encode(Sha256::digest(oid.to_string().as_bytes())), 0));
        }
        if let Some(hit) = self.sha_cache.borrow().get(&oid) {
            return Ok(hit.clone());
        }
        let blob = self.git.find_blob(oid)?;
        let v = (
            hex::encode(Sha256::digest(blob.content())),
            blob.size() as u64,
        );
        let mut cache = self.sha_cache.borrow_mut();
        if cache.len() >= SHA_CACHE_MAX {
            cache.clear();
        }
        cache.insert(oid, v.clone());
        Ok(v)
    }

    /// Content identities of files.
    pub fn version_files(&self, files: &[FileRef]) -> Result<Vec<VersionFile>, Error> {
        files
            .iter()
            .map(|f| {
                let oid = Oid::from_str(&f.oid)?;
                let (sha256, size) = self.blob_sha256(oid, f.mode)?;
                Ok(VersionFile {
                    path: f.path.clone(),
                    sha256,
                    size,
                    mode: f.mode,
                    blob: f.oid.clone(),
                })
            })
            .collect()
    }

    /// A [`FileTree`] of files (paths prefixed with `prefix/` when not empty), reading the
    /// exact blob bytes: 100755 → executable, 120000 → symlink, 160000 → submodule.
    pub fn file_tree(&self, prefix: &str, files: &[FileRef]) -> Result<FileTree, Error> {
        let mut tree = FileTree::new();
        for f in files {
            let path = if prefix.is_empty() {
                f.path.clone()
            } else {
                format!("{prefix}/{}", f.path)
            };
            let entry = match f.mode {
                MODE_GITLINK => TreeEntry::Submodule,
                MODE_LINK => {
                    let bytes = self.blob(&f.oid)?;
                    TreeEntry::Symlink {
                        target: String::from_utf8_lossy(&bytes).into_owned(),
                    }
                }
                mode => TreeEntry::File {
                    bytes: self.blob(&f.oid)?.into(),
                    executable: mode == MODE_EXEC,
                },
            };
            tree.insert(path, entry);
        }
        Ok(tree)
    }

    /// The policy files (`*.toml` under `policies`) of a tree, as `(path, text)` for
    /// [`Policy::load`]; paths are repository-relative (`policies/approvals.toml`).
    pub fn policy_files(
        &self,
        tree_id: Option<Oid>,
        policies: &str,
    ) -> Result<Vec<(String, String)>, Error> {
        let Some(tree_id) = tree_id else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for f in self.list_files(tree_id)? {
            if !f.path.ends_with(".toml") || f.mode == MODE_GITLINK || f.mode == MODE_LINK {
                continue;
            }
            let bytes = self.blob(&f.oid)?;
            let path = format!("{}/{}", policies.trim_matches('/'), f.path);
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::PolicyNotUtf8 { path: path.clone() })?;
            out.push((path, text.trim_start_matches('\u{feff}').to_string()));
        }
        Ok(out)
    }

    /// Loads the policy stored under `policies` in the tree `tree_id`.
    pub fn load_policy(
        &self,
        tree_id: Option<Oid>,
        policies: &str,
    ) -> Result<Result<Policy, Vec<String>>, Error> {
        let files = match self.policy_files(tree_id, policies) {
            Ok(f) => f,
            Err(Error::PolicyNotUtf8 { path }) => {
                return Ok(Err(vec![format!("{path}: not UTF-8 (save it as UTF-8)")]));
            }
            Err(e) => return Err(e),
        };
        Ok(Policy::load(&files)
            .map(|l| l.policy)
            .map_err(|errs| errs.iter().map(|e| e.to_string()).collect()))
    }

    /// Approval evidence carried by a commit: merge or not, trailers, and (when asked)
    /// its SSH signature checked against the members of `policy`.
    pub fn evidence(
        &self,
        facts: &CommitFacts,
        policy: &Policy,
        check_signature: bool,
    ) -> Evidence {
        Evidence {
            is_merge: facts.parents.len() > 1,
            trailers: parse_trailers(&facts.message),
            signature: if check_signature {
                sig::check_commit(&self.git, facts.oid, policy)
            } else {
                None
            },
            forge_reviews: Vec::new(),
        }
    }

    /// The commits a merge brings in: reachable from parents 2.. but not from the first
    /// parent, at most [`MERGE_AUTHOR_WALK_CAP`], each with its author.
    ///
    /// `known` may hold commits known to be reachable from the first parent; when it holds
    /// *all* of them (`known_is_complete`), a plain walk that stops at them is exact. Else a
    /// short walk that must end at the first parent is tried, then libgit2's revwalk with
    /// the first parent hidden.
    pub fn merge_walk(
        &self,
        parents: &[Oid],
        known: &HashSet<Oid>,
        known_is_complete: bool,
    ) -> Result<MergeWalk, Error> {
        let Some((&first, others)) = parents.split_first() else {
            return Ok(MergeWalk::default());
        };
        if others.is_empty() {
            return Ok(MergeWalk {
                commits: Vec::new(),
                complete: true,
            });
        }
        let limit = if known_is_complete {
            MERGE_AUTHOR_WALK_CAP
        } else {
            64
        };
        let mut out: Vec<(Oid, Person)> = Vec::new();
        let mut seen: HashSet<Oid> = HashSet::new();
        let mut stack: Vec<Oid> = others.to_vec();
        let mut converged = true;
        while let Some(x) = stack.pop() {
            if x == first || known.contains(&x) || !seen.insert(x) {
                continue;
            }
            if out.len() >= limit {
                converged = false;
                break;
            }
            let c = self.git.find_commit(x)?;
            if c.parent_count() == 0 && !known_is_complete {
                // Reached a root without meeting the first parent: not exact.
                converged = false;
                break;
            }
            out.push((x, person(&c.author())));
            stack.extend(c.parent_ids());
        }
        if converged {
            return Ok(MergeWalk {
                commits: out,
                complete: true,
            });
        }
        let mut walk = self.git.revwalk()?;
        for p in others {
            walk.push(*p)?;
        }
        walk.hide(first)?;
        let mut commits = Vec::new();
        for oid in walk.by_ref().take(MERGE_AUTHOR_WALK_CAP) {
            let oid = oid?;
            commits.push((oid, person(&self.git.find_commit(oid)?.author())));
        }
        let complete = walk.next().is_none();
        Ok(MergeWalk { commits, complete })
    }

    /// Authors of a change: for a merge, the authors of the commits it brings in (see
    /// [`Repo::merge_walk`]) plus the merge commit's own author when `merger_wrote` (the
    /// merge carries content of its own); for any other commit, its author.
    pub fn change_authors(
        &self,
        facts: &CommitFacts,
        merger_wrote: bool,
        walk: &MergeWalk,
    ) -> Vec<Person> {
        let mut authors: Vec<Person> = Vec::new();
        if merger_wrote || facts.parents.len() < 2 {
            authors.push(facts.author.clone());
        }
        for (_, p) in &walk.commits {
            if !authors
                .iter()
                .any(|a| a.email.eq_ignore_ascii_case(&p.email))
            {
                authors.push(p.clone());
            }
        }
        authors
    }
}

/// The commits a merge brings in.
#[derive(Debug, Clone, Default)]
pub struct MergeWalk {
    /// Commits and their authors (at most [`MERGE_AUTHOR_WALK_CAP`]).
    pub commits: Vec<(Oid, Person)>,
    /// False when the cap cut the list short.
    pub complete: bool,
}

/// `Approved-by:` / `Reviewed-by:` trailers of a commit message (`Name <email>` or a bare
/// email), in order.
pub fn parse_trailers(message: &str) -> Vec<Trailer> {
    let Ok(trailers) = git2::message_trailers_strs(message) else {
        return Vec::new();
    };
    trailers
        .iter()
        .filter(|(k, _)| {
            k.eq_ignore_ascii_case("approved-by") || k.eq_ignore_ascii_case("reviewed-by")
        })
        .filter_map(|(k, v)| {
            let v = v.trim();
            let email = match (v.rfind('<'), v.rfind('>')) {
                (Some(a), Some(b)) if a < b => &v[a + 1..b],
                _ => v,
            }
            .trim();
            (!email.is_empty()).then(|| Trailer {
                key: k.to_string(),
                email: email.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_in_both_forms() {
        let msg = "Merge branch 'x'\n\nSome text.\n\nApproved-by: Bob Smith <bob@example.org>\nReviewed-by: carol@example.org\nSigned-off-by: Dan <dan@example.org>\n";
        let t = parse_trailers(msg);
        assert_eq!(
            t.iter()
                .map(|t| (t.key.as_str(), t.email.as_str()))
                .collect::<Vec<_>>(),
            [
                ("Approved-by", "bob@example.org"),
                ("Reviewed-by", "carol@example.org")
            ]
        );
        assert!(parse_trailers("no trailers here").is_empty());
    }

    #[test]
    fn digest_ignores_order_and_folder() {
        let f = |p: &str, s: &str| VersionFile {
            path: p.into(),
            sha256: s.into(),
            size: 1,
            mode: MODE_FILE,
            blob: "0".into(),
        };
        assert_eq!(
            content_digest(&[f("a", "1"), f("b", "2")]),
            content_digest(&[f("b", "2"), f("a", "1")])
        );
        assert_ne!(
            content_digest(&[f("a", "1")]),
            content_digest(&[f("a", "2")])
        );
    }
}
