//! Assembling a library: which files form which script.
//!
//! A folder holding `script.toml` is one script and every file under it is delivered with
//! it. Files outside such folders become scripts when a discovery rule in policy claims
//! them, so an existing collection of `.ps1`/`.sh` files is a library as it stands.
//! A broken manifest refuses that one script; the others are still assembled.

use crate::diag::{ConfigError, Location};
use crate::manifest::{Launch, Manifest, check_script_name};
use crate::policy::Policy;
use crate::tree::{FileTree, TreeEntry};
use std::collections::{BTreeMap, HashSet};

/// The manifest file name.
pub const MANIFEST: &str = "script.toml";

/// One script of a library with its files.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// Script name, from the manifest or derived from the path.
    pub name: String,
    /// Folder relative to the library root (for a discovered script, its file's folder).
    pub dir: String,
    /// The manifest (synthesised from the discovery rule for discovered scripts).
    pub manifest: Manifest,
    /// Files delivered with the script, keyed by path relative to `dir`.
    /// For manifest scripts this includes `script.toml` itself.
    pub files: BTreeMap<String, TreeEntry>,
    /// True when made by a discovery rule rather than a manifest.
    pub discovered: bool,
}

impl Script {
    /// Path of a script file relative to the library root.
    pub fn library_path(&self, file: &str) -> String {
        if self.dir.is_empty() {
            file.to_string()
        } else {
            format!("{}/{file}", self.dir)
        }
    }

    /// Total size in bytes of the script's regular files.
    pub fn size(&self) -> u64 {
        self.files
            .values()
            .map(|e| match e {
                TreeEntry::File { bytes, .. } => bytes.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// The files that are entry points, with their launch settings.
    pub fn entry_files(&self) -> impl Iterator<Item = (&String, &Launch)> {
        self.manifest.entries.values().map(|l| (&l.file, l))
    }
}

/// A script folder whose manifest could not be used.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokenScript {
    /// Folder relative to the library root.
    pub dir: String,
    /// Why.
    pub errors: Vec<ConfigError>,
}

/// A library assembled from a tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Library {
    /// Scripts in name order.
    pub scripts: Vec<Script>,
    /// Script folders refused before scanning (bad manifests, duplicate names).
    pub broken: Vec<BrokenScript>,
    /// Files that belong to no script (not under a manifest, claimed by no discovery rule).
    pub unclaimed: Vec<String>,
    /// Path of the library root, for messages (e.g. `example-library`).
    pub root: String,
}

impl Library {
    /// Assembles the library found in `tree` (paths relative to the library root).
    /// `root` is only used to prefix locations in messages.
    pub fn assemble(root: &str, tree: &FileTree, policy: &Policy) -> Library {
        let prefix = |p: &str| {
            if root.is_empty() {
                p.to_string()
            } else {
                format!("{root}/{p}")
            }
        };
        let mut lib = Library {
            root: root.to_string(),
            ..Default::default()
        };
        // Script folders: every folder holding a manifest.
        let mut dirs: Vec<String> = tree
            .iter()
            .filter_map(|(p, _)| {
                if p == MANIFEST {
                    Some(String::new())
                } else {
                    p.strip_suffix(&format!("/{MANIFEST}")).map(str::to_string)
                }
            })
            .collect();
        dirs.sort();
        // A script folder inside another is ambiguous: refuse the inner one. Folders are
        // looked up by their ancestors (a handful per path) rather than by scanning every
        // script folder for each path, so a library of thousands of scripts assembles in
        // time proportional to its files.
        let mut outer: HashSet<String> = HashSet::new();
        for d in dirs {
            // Sorted, so every ancestor of `d` that is a script folder is already in `outer`.
            if let Some(o) = enclosing(&outer, &d) {
                lib.broken.push(BrokenScript {
                    dir: d.clone(),
                    errors: vec![ConfigError::new(
                        Location::file(prefix(&format!("{d}/{MANIFEST}"))),
                        format!("script folder inside another script folder (`{o}`)"),
                        Some("move it beside the other script, not inside it".into()),
                    )],
                });
                continue;
            }
            outer.insert(d);
        }
        let in_script = |path: &str| -> Option<&String> { enclosing(&outer, path) };
        let mut by_dir: BTreeMap<String, BTreeMap<String, TreeEntry>> = BTreeMap::new();
        for (path, entry) in tree.iter() {
            if let Some(d) = in_script(path) {
                let rel = if d.is_empty() {
                    path.to_string()
                } else {
                    path[d.len() + 1..].to_string()
                };
                by_dir
                    .entry(d.clone())
                    .or_default()
                    .insert(rel, entry.clone());
            } else if let Some(rule) = policy.discovery.iter().find(|r| r.is_match(path)) {
                let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
                let stem = path.rsplit_once('.').map(|(s, _)| s).unwrap_or(path);
                let name: String = stem
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                            c
                        } else {
                            '-'
                        }
                    })
                    .collect();
                let manifest = Manifest {
                    name: name.clone(),
                    description: if rule.description.is_empty() {
                        format!("{path} (discovered by rule `{}`)", rule.glob)
                    } else {
                        rule.description.clone()
                    },
                    platforms: vec![rule.platform],
                    risk: rule.risk,
                    tags: rule.tags.clone(),
                    timeout: rule.timeout,
                    output_limit: rule.output_limit,
                    entries: BTreeMap::from([(
                        rule.platform,
                        Launch {
                            file: file.to_string(),
                            interpreter: rule.interpreter,
                        },
                    )]),
                    parameters: Vec::new(),
                };
                lib.scripts.push(Script {
                    name,
                    dir: dir.to_string(),
                    manifest,
                    files: BTreeMap::from([(file.to_string(), entry.clone())]),
                    discovered: true,
                });
            } else {
                lib.unclaimed.push(prefix(path));
            }
        }
        for (dir, files) in by_dir {
            let manifest_path = prefix(&if dir.is_empty() {
                MANIFEST.to_string()
            } else {
                format!("{dir}/{MANIFEST}")
            });
            let text = match files.get(MANIFEST) {
                Some(TreeEntry::File { bytes, .. }) => match std::str::from_utf8(bytes) {
                    Ok(t) => t.trim_start_matches('\u{feff}').to_string(),
                    Err(_) => {
                        lib.broken.push(BrokenScript {
                            dir,
                            errors: vec![ConfigError::new(
                                Location::file(manifest_path),
                                "script.toml is not UTF-8",
                                Some("save it as UTF-8".into()),
                            )],
                        });
                        continue;
                    }
                },
                _ => {
                    lib.broken.push(BrokenScript {
                        dir,
                        errors: vec![ConfigError::new(
                            Location::file(manifest_path),
                            "script.toml is not a regular file",
                            None,
                        )],
                    });
                    continue;
                }
            };
            match Manifest::parse(&manifest_path, &text) {
                Ok(manifest) => lib.scripts.push(Script {
                    name: manifest.name.clone(),
                    dir,
                    manifest,
                    files,
                    discovered: false,
                }),
                Err(errors) => lib.broken.push(BrokenScript { dir, errors }),
            }
        }
        // Names must be unique and valid (discovered names come from paths).
        lib.scripts
            .sort_by(|a, b| a.name.cmp(&b.name).then(a.dir.cmp(&b.dir)));
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for s in &lib.scripts {
            *counts.entry(s.name.to_ascii_lowercase()).or_default() += 1;
        }
        let mut kept = Vec::new();
        for s in std::mem::take(&mut lib.scripts) {
            let where_ = Location::file(prefix(&s.library_path(if s.discovered {
                s.files.keys().next().map(String::as_str).unwrap_or("")
            } else {
                MANIFEST
            })));
            if counts[&s.name.to_ascii_lowercase()] > 1 {
                lib.broken.push(BrokenScript {
                    dir: s.dir.clone(),
                    errors: vec![ConfigError::new(
                        where_,
                        format!("script name `{}` is used by more than one script (names compare case-insensitively)", s.name),
                        Some("give each script a unique name".into()),
                    )],
                });
            } else if let Err(msg) = check_script_name(&s.name) {
                lib.broken.push(BrokenScript {
                    dir: s.dir.clone(),
                    errors: vec![ConfigError::new(where_, msg, None)],
                });
            } else {
                kept.push(s);
            }
        }
        lib.scripts = kept;
        lib
    }

    /// The script with this name.
    pub fn script(&self, name: &str) -> Option<&Script> {
        self.scripts.iter().find(|s| s.name == name)
    }
}

/// The outermost folder of `dirs` that holds `path` (the library root `""` holds
/// everything): the first of `path`'s proper ancestors, shortest first, that is in `dirs`.
fn enclosing<'a>(dirs: &'a HashSet<String>, path: &str) -> Option<&'a String> {
    if let Some(root) = dirs.get("") {
        return Some(root);
    }
    path.match_indices('/')
        .find_map(|(i, _)| dirs.get(&path[..i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_folders_and_discovered_files() {
        let policy = Policy::load(&[(
            "policies/discovery.toml".into(),
            "[[discovery]]\nglob = \"legacy/**/*.ps1\"\nplatform = \"windows\"\ninterpreter = \"powershell\"\n".into(),
        )])
        .expect("policy")
        .policy;
        let mut tree = FileTree::new();
        tree.insert_file(
            "ps/script.toml",
            "name = \"ps\"\nplatforms = [\"linux\"]\n[entry.linux]\nfile = \"ps.sh\"\ninterpreter = \"bash\"\n",
        );
        tree.insert_file("ps/ps.sh", "#!/bin/sh\nps\n");
        tree.insert_file("legacy/Get Users.ps1", "Get-LocalUser\n");
        tree.insert_file("notes.txt", "hi");
        tree.insert_file(
            "bad/script.toml",
            "name = \"bad\"\nplatforms = [\"linux\"]\ncolour = 1\n",
        );
        let lib = Library::assemble("lib", &tree, &policy);
        let names: Vec<&str> = lib.scripts.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["legacy-Get-Users", "ps"]);
        assert_eq!(lib.unclaimed, ["lib/notes.txt"]);
        assert_eq!(lib.broken.len(), 1);
        assert!(
            lib.broken[0].errors[0]
                .to_string()
                .starts_with("lib/bad/script.toml:3:")
        );
        assert_eq!(lib.script("ps").map(|s| s.files.len()), Some(2));
    }

    #[test]
    fn files_belong_to_the_outermost_script_folder_that_holds_them() {
        let policy = Policy::default();
        let manifest = |name: &str| {
            format!(
                "name = \"{name}\"\ndescription = \"d\"\nplatforms = [\"linux\"]\n[entry.linux]\nfile = \"run.sh\"\ninterpreter = \"bash\"\n"
            )
        };
        let mut tree = FileTree::new();
        for dir in ["a", "a/b", "a-b", "x/y"] {
            tree.insert_file(
                format!("{dir}/script.toml"),
                manifest(&dir.replace('/', "-")),
            );
            tree.insert_file(format!("{dir}/run.sh"), "#!/bin/bash\nid\n");
        }
        tree.insert_file("a/b/deep/data.txt", "1");
        tree.insert_file("ab.txt", "loose");
        let lib = Library::assemble("lib", &tree, &policy);
        let dirs: Vec<&str> = lib.scripts.iter().map(|s| s.dir.as_str()).collect();
        assert_eq!(dirs, ["a", "a-b", "x/y"]);
        // The inner folder is refused and its files stay with the outer script; `a-b`
        // sorts between `a` and `a/b` but is not inside `a`.
        assert_eq!(lib.broken.len(), 1);
        assert_eq!(lib.broken[0].dir, "a/b");
        assert!(lib.broken[0].errors[0].to_string().contains("(`a`)"));
        let a: Vec<&str> = lib.scripts[0].files.keys().map(String::as_str).collect();
        assert_eq!(
            a,
            [
                "b/deep/data.txt",
                "b/run.sh",
                "b/script.toml",
                "run.sh",
                "script.toml"
            ]
        );
        assert_eq!(lib.scripts[1].files.len(), 2);
        assert_eq!(lib.unclaimed, ["lib/ab.txt"]);

        // A manifest at the library root makes the whole library one script.
        tree.insert_file("script.toml", manifest("root"));
        let lib = Library::assemble("lib", &tree, &policy);
        assert_eq!(lib.scripts.len(), 1);
        assert_eq!(lib.broken.len(), 4);
        assert!(lib.unclaimed.is_empty());
    }
}
