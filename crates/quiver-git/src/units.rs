//! Script units inside a library tree: which files form which script.
//!
//! A unit is a manifest folder (the outermost folder holding `script.toml`, keyed by its
//! path relative to the library root) or a single file claimed by a discovery rule (keyed
//! by its path). The same grouping as `Library::assemble`, but answered per changed path
//! from git trees, so a commit costs what it changes, not the size of the library.

use crate::Error;
use crate::repo::{FileRef, Repo, VersionFile, content_digest};
use git2::Oid;
use quiver_core::library::MANIFEST;
use quiver_core::{FileTree, Policy};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// A script unit's location.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    /// A folder with a `script.toml`.
    Dir(String),
    /// A file claimed by a discovery rule.
    File(String),
}

impl Unit {
    /// The key used in the index (library-relative path).
    pub fn key(&self) -> &str {
        match self {
            Unit::Dir(d) | Unit::File(d) => d,
        }
    }

    /// Path of its manifest (folders) or of the file itself.
    pub fn anchor_path(&self) -> String {
        match self {
            Unit::Dir(d) if d.is_empty() => MANIFEST.to_string(),
            Unit::Dir(d) => format!("{d}/{MANIFEST}"),
            Unit::File(f) => f.clone(),
        }
    }
}

/// Joins a library-relative folder and a relative path.
pub fn join(dir: &str, rel: &str) -> String {
    if dir.is_empty() {
        rel.to_string()
    } else {
        format!("{dir}/{rel}")
    }
}

/// Answers "which unit holds this path" for one library tree, memoising manifest lookups.
pub struct UnitFinder<'r> {
    repo: &'r Repo,
    tree: Option<Oid>,
    manifests: HashMap<String, bool>,
    /// Subtree ids by folder, known from the diff (saves lookups from the library root).
    hints: HashMap<String, Oid>,
}

impl<'r> UnitFinder<'r> {
    /// A finder over a library tree (`None` when the library folder does not exist).
    pub fn new(repo: &'r Repo, tree: Option<Oid>) -> Self {
        UnitFinder {
            repo,
            tree,
            manifests: HashMap::new(),
            hints: HashMap::new(),
        }
    }

    /// Adds what is already known: whether the library root holds a `script.toml`, and
    /// the ids of subtrees by folder.
    pub fn with_hints(mut self, root_manifest: Option<bool>, hints: HashMap<String, Oid>) -> Self {
        if let Some(r) = root_manifest {
            self.manifests.insert(String::new(), r);
        }
        self.hints = hints;
        self
    }

    fn dir_tree(&self, dir: &str) -> Result<Option<Oid>, Error> {
        let Some(tree) = self.tree else {
            return Ok(None);
        };
        if dir.is_empty() {
            return Ok(Some(tree));
        }
        if let Some(id) = self.hints.get(dir) {
            return Ok(Some(*id));
        }
        self.repo.subtree(tree, dir)
    }

    /// Whether `dir` holds a `script.toml`.
    pub fn has_manifest(&mut self, dir: &str) -> Result<bool, Error> {
        if let Some(&hit) = self.manifests.get(dir) {
            return Ok(hit);
        }
        let hit = match self.dir_tree(dir)? {
            Some(t) => self.repo.file_at(t, MANIFEST)?.is_some(),
            None => false,
        };
        self.manifests.insert(dir.to_string(), hit);
        Ok(hit)
    }

    /// The unit holding `path` (library-relative), if any.
    pub fn unit_of(&mut self, path: &str, policy: &Policy) -> Result<Option<Unit>, Error> {
        if self.has_manifest("")? {
            return Ok(Some(Unit::Dir(String::new())));
        }
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let dir = &path[..end + i];
            if self.has_manifest(dir)? {
                return Ok(Some(Unit::Dir(dir.to_string())));
            }
            end += i + 1;
        }
        Ok(policy
            .discovery
            .iter()
            .any(|r| r.is_match(path))
            .then(|| Unit::File(path.to_string())))
    }

    /// Files of a unit in this tree (paths relative to the unit), or `None` if absent.
    pub fn files(&mut self, unit: &Unit) -> Result<Option<Vec<FileRef>>, Error> {
        let Some(tree) = self.tree else {
            return Ok(None);
        };
        match unit {
            Unit::Dir(d) => {
                if !self.has_manifest(d)? {
                    return Ok(None);
                }
                match self.dir_tree(d)? {
                    Some(id) => Ok(Some(self.repo.list_files(id)?)),
                    None => Ok(None),
                }
            }
            Unit::File(f) => Ok(self.repo.file_at(tree, f)?.map(|(oid, mode)| {
                vec![FileRef {
                    path: f.rsplit('/').next().unwrap_or(f).to_string(),
                    mode,
                    oid: oid.to_string(),
                }]
            })),
        }
    }
}

/// Every unit of a library tree, with its files.
pub fn all_units(
    repo: &Repo,
    lib_tree: Option<Oid>,
    policy: &Policy,
) -> Result<BTreeMap<Unit, Vec<FileRef>>, Error> {
    let mut out: BTreeMap<Unit, Vec<FileRef>> = BTreeMap::new();
    let Some(lib_tree) = lib_tree else {
        return Ok(out);
    };
    let files = repo.list_files(lib_tree)?;
    let mut dirs: Vec<String> = files
        .iter()
        .filter_map(|f| {
            if f.path == MANIFEST {
                Some(String::new())
            } else {
                f.path
                    .strip_suffix(&format!("/{MANIFEST}"))
                    .map(str::to_string)
            }
        })
        .collect();
    dirs.sort();
    let mut outer: Vec<String> = Vec::new();
    for d in dirs {
        if !outer
            .iter()
            .any(|o| o.is_empty() || d.starts_with(&format!("{o}/")))
        {
            outer.push(d);
        }
    }
    for f in files {
        let owner = outer
            .iter()
            .find(|d| d.is_empty() || f.path.starts_with(&format!("{d}/")));
        match owner {
            Some(d) => {
                let rel = if d.is_empty() {
                    f.path.clone()
                } else {
                    f.path[d.len() + 1..].to_string()
                };
                out.entry(Unit::Dir(d.clone()))
                    .or_default()
                    .push(FileRef { path: rel, ..f });
            }
            None if policy.discovery.iter().any(|r| r.is_match(&f.path)) => {
                let name = f.path.rsplit('/').next().unwrap_or(&f.path).to_string();
                out.insert(
                    Unit::File(f.path.clone()),
                    vec![FileRef { path: name, ..f }],
                );
            }
            None => {}
        }
    }
    Ok(out)
}

/// A unit's content read from git: the bytes as a [`FileTree`] (library-relative paths,
/// ready for `Library::assemble`) and each file's identity.
pub struct UnitContent {
    /// Files of the unit.
    pub files: Vec<VersionFile>,
    /// Content digest.
    pub digest: String,
    /// The bytes, library-relative.
    pub tree: FileTree,
    /// The content assembled under the policy in effect, once asked for.
    pub assembled: std::cell::OnceCell<quiver_core::Library>,
}

/// Reads a unit's files once: bytes for the tree, sha256 for the identity.
pub fn read_unit(repo: &Repo, unit: &Unit, files: &[FileRef]) -> Result<UnitContent, Error> {
    let mut tree = FileTree::new();
    let mut out = Vec::with_capacity(files.len());
    let parent = match unit {
        Unit::Dir(d) => d.clone(),
        Unit::File(f) => f
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default(),
    };
    for f in files {
        let oid = Oid::from_str(&f.oid)?;
        let path = join(&parent, &f.path);
        let (sha256, size) = match f.mode {
            crate::repo::MODE_GITLINK => {
                tree.insert(path, quiver_core::TreeEntry::Submodule);
                repo.blob_sha256(oid, f.mode)?
            }
            mode => {
                let blob = repo.git().find_blob(oid)?;
                let bytes = blob.content();
                let sha = hex::encode(Sha256::digest(bytes));
                let entry = if mode == crate::repo::MODE_LINK {
                    quiver_core::TreeEntry::Symlink {
                        target: String::from_utf8_lossy(bytes).into_owned(),
                    }
                } else {
                    quiver_core::TreeEntry::File {
                        bytes: bytes.into(),
                        executable: mode == crate::repo::MODE_EXEC,
                    }
                };
                tree.insert(path, entry);
                (sha, bytes.len() as u64)
            }
        };
        out.push(VersionFile {
            path: f.path.clone(),
            sha256,
            size,
            mode: f.mode,
            blob: f.oid.clone(),
        });
    }
    let digest = content_digest(&out);
    Ok(UnitContent {
        files: out,
        digest,
        tree,
        assembled: std::cell::OnceCell::new(),
    })
}
