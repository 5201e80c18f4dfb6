//! Reading a library folder and its policy folder from disk.
//!
//! The linter must judge exactly what git would deliver, so the folder is read as it
//! stands: symbolic links are recorded with their target and never followed, nothing is
//! skipped (a stray `.git` is a finding, not noise), and no file is refused here — the
//! scanner decides. The one concession to the disk is a size cap: a file larger than the
//! policy's limit is read only up to the cap, and its size on disk is remembered so the
//! finding can still state it.

use anyhow::{Context, bail};
use quiver_core::{ConfigError, FileTree, Location, TreeEntry};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A library folder read into memory.
pub struct ReadTree {
    /// Every entry, keyed by its `/`-separated path relative to the folder.
    pub tree: FileTree,
    /// Files read only up to the cap: path → size on disk.
    pub truncated: BTreeMap<String, u64>,
    /// Regular files read.
    pub files: usize,
    /// Their total size on disk.
    pub bytes: u64,
}

/// Reads every entry under `root` without following symbolic links; regular files are
/// read up to `cap` bytes each.
pub fn read_tree(root: &Path, cap: u64) -> anyhow::Result<ReadTree> {
    let mut out = ReadTree {
        tree: FileTree::new(),
        truncated: BTreeMap::new(),
        files: 0,
        bytes: 0,
    };
    // Depth-first over directories; paths are built from names so they never depend on
    // how `root` was spelt. Regular files are listed first and read afterwards, several
    // at once.
    let mut to_read: Vec<(String, PathBuf, u64, bool)> = Vec::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot list {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot stat {}", path.display()))?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                let target = fs::read_link(&path)
                    .with_context(|| format!("cannot read link {}", path.display()))?;
                out.tree.insert(
                    key,
                    TreeEntry::Symlink {
                        target: slashes(&target),
                    },
                );
            } else if kind.is_dir() {
                stack.push((path, key));
            } else if kind.is_file() {
                to_read.push((key, path, meta.len(), is_executable(&meta)));
            } else {
                // A FIFO or device cannot come out of git; reading it could block forever.
                bail!(
                    "{} is not a regular file, folder or symbolic link; git cannot store it, remove it",
                    path.display()
                );
            }
        }
    }
    let contents = read_all(&to_read, cap);
    for ((key, _, size, executable), bytes) in to_read.into_iter().zip(contents) {
        let bytes = bytes?;
        if (bytes.len() as u64) < size {
            out.truncated.insert(key.clone(), size);
        }
        out.files += 1;
        out.bytes += size;
        out.tree.insert(
            key,
            TreeEntry::File {
                bytes: bytes.into(),
                executable,
            },
        );
    }
    mark_submodules(root, &mut out.tree);
    Ok(out)
}

/// Reads every listed file (up to `cap` bytes each) on as many threads as there are
/// cores: a library of thousands of files is mostly small reads, which a single thread
/// spends most of a lint waiting on. Results come back in the order of `files`.
fn read_all(files: &[(String, PathBuf, u64, bool)], cap: u64) -> Vec<anyhow::Result<Vec<u8>>> {
    let threads = quiver_core::par::cores().min(files.len().div_ceil(64));
    quiver_core::par::map(files, threads, |(_, path, size, _)| {
        read_capped(path, *size, cap)
    })
}

/// Marks the gitlinks (submodules) of the git work tree that `root` sits in as
/// [`TreeEntry::Submodule`], replacing whatever was read below them. A folder read alone
/// cannot tell a submodule from the library's own files: checked out, its files look like
/// the script's (they are never delivered); after a clone without
/// `--recurse-submodules` it is an empty folder and nothing at all. The controller reads
/// gitlinks from git and refuses the script (`path.submodule`), so lint must too. Outside
/// a git work tree there is nothing to mark.
fn mark_submodules(root: &Path, tree: &mut FileTree) {
    // Only a folder inside a work tree can have gitlinks; asking libgit2 costs its start-up
    // (TLS certificates included), so look for a `.git` first.
    let Ok(abs) = root.canonicalize() else {
        return;
    };
    if !abs.ancestors().any(|a| a.join(".git").exists()) {
        return;
    }
    let Ok(repo) = git2::Repository::discover(root) else {
        return;
    };
    let (Some(workdir), Ok(index)) = (repo.workdir(), repo.index()) else {
        return;
    };
    let (Ok(root_abs), Ok(workdir)) = (root.canonicalize(), workdir.canonicalize()) else {
        return;
    };
    let Ok(prefix) = root_abs.strip_prefix(&workdir) else {
        return;
    };
    let prefix = prefix.to_string_lossy().replace('\\', "/");
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    for entry in index.iter() {
        // 160000 is git's mode for a gitlink.
        if entry.mode != 0o160000 {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path).into_owned();
        let Some(rel) = path.strip_prefix(&prefix).filter(|r| !r.is_empty()) else {
            continue;
        };
        let below = format!("{rel}/");
        let inside: Vec<String> = tree
            .iter()
            .filter(|(k, _)| k.starts_with(&below))
            .map(|(k, _)| k.to_string())
            .collect();
        for k in inside {
            tree.remove(&k);
        }
        tree.insert(rel.to_string(), TreeEntry::Submodule);
    }
}

fn read_capped(path: &Path, size: u64, cap: u64) -> anyhow::Result<Vec<u8>> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::with_capacity(size.min(cap) as usize);
    file.take(cap)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

/// Policy files as `(display path, text)`, and the files that could not be used.
pub struct PolicyFiles {
    /// Readable files, in name order.
    pub files: Vec<(String, String)>,
    /// Files that are not UTF-8.
    pub errors: Vec<ConfigError>,
}

/// Reads the `*.toml` files directly under `dir`; files that are not UTF-8 come back as
/// errors rather than aborting the run.
pub fn read_policies(dir: &Path, display: &str) -> anyhow::Result<PolicyFiles> {
    let mut names: Vec<String> = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = fs::metadata(entry.path())
            .map(|m| m.is_file())
            .unwrap_or(false);
        if is_file && name.to_ascii_lowercase().ends_with(".toml") {
            names.push(name);
        }
    }
    names.sort();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let shown = join_display(display, &name);
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        match String::from_utf8(bytes) {
            Ok(text) => {
                let text = match text.strip_prefix('\u{feff}') {
                    Some(t) => t.to_string(),
                    None => text,
                };
                files.push((shown, text));
            }
            Err(_) => errors.push(ConfigError::new(
                Location::file(shown),
                "policy file is not UTF-8",
                Some("save it as UTF-8".into()),
            )),
        }
    }
    Ok(PolicyFiles { files, errors })
}

/// `display/name`, or `name` when `display` is empty.
pub fn join_display(display: &str, name: &str) -> String {
    if display.is_empty() {
        name.to_string()
    } else {
        format!("{display}/{name}")
    }
}

/// A path as shown in messages: `/`-separated, without `./` or a trailing slash;
/// `.` becomes the empty string.
pub fn display_path(path: &Path) -> String {
    let s = slashes(path);
    let mut s = s.as_str();
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    let s = s.trim_end_matches('/');
    if s == "." {
        String::new()
    } else if s.is_empty() && path.has_root() {
        "/".to_string()
    } else {
        s.to_string()
    }
}

fn slashes(path: &Path) -> String {
    let s = path.to_string_lossy();
    if std::path::MAIN_SEPARATOR == '\\' {
        s.replace('\\', "/")
    } else {
        s.into_owned()
    }
}

/// `path` relative to the git work tree that holds it (or else to the current folder),
/// `/`-separated: what code-scanning services expect in a SARIF `uri`. `None` when
/// neither applies (the display path is used then).
pub fn repo_relative(path: &Path) -> Option<String> {
    let abs = path.canonicalize().ok()?;
    let base = abs
        .ancestors()
        .find(|a| a.join(".git").exists())
        .map(Path::to_path_buf)
        .or_else(|| std::env::current_dir().ok()?.canonicalize().ok())?;
    let rel = abs.strip_prefix(&base).ok()?;
    Some(display_path(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_paths_are_normalised() {
        assert_eq!(
            display_path(Path::new("./example-library/")),
            "example-library"
        );
        assert_eq!(display_path(Path::new(".")), "");
        assert_eq!(display_path(Path::new("a/b")), "a/b");
        assert_eq!(join_display("", "x.toml"), "x.toml");
        assert_eq!(join_display("policies", "x.toml"), "policies/x.toml");
    }
}
