//! Library repositories for tests and benchmarks, built with the git CLI.
//!
//! - [`TestRepo`]: hand-written histories: write files, commit as someone, open a branch
//!   and merge it with `--no-ff` and `Approved-by:` trailers, push directly to `main`.
//! - [`generate`]: a large repository (N scripts, M first-parent commits, merges with
//!   trailers, direct pushes, renames, CRLF and UTF-16 files) through `git fast-import`.
//! - [`quiver_bin`]: the real `quiver` binary, built once.
//!
//! Standard library only, so the quiver-git benchmark can include this file as is.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};

/// A person who writes or approves changes.
#[derive(Debug, Clone, Copy)]
pub struct Who {
    /// Name.
    pub name: &'static str,
    /// Email.
    pub email: &'static str,
}

/// Lead, may approve.
pub const ALICE: Who = Who {
    name: "Alice Lead",
    email: "alice@example.org",
};
/// Lead, may approve.
pub const BOB: Who = Who {
    name: "Bob Lead",
    email: "bob@example.org",
};
/// Lead, may approve.
pub const CAROL: Who = Who {
    name: "Carol Lead",
    email: "carol@example.org",
};
/// Analyst: may not approve.
pub const DAVE: Who = Who {
    name: "Dave Analyst",
    email: "dave@example.org",
};
/// Not a member.
pub const MALLORY: Who = Who {
    name: "Mallory",
    email: "mallory@evil.example",
};

/// Members and roles used by generated repositories: alice, bob and carol are leads
/// (author + approve), dave is an analyst (execute only).
pub const MEMBERS_TOML: &str = r#"[[role]]
id = "lead"
permissions = ["author", "approve", "execute"]

[[role]]
id = "analyst"
permissions = ["execute"]

[[member]]
id = "alice"
emails = ["alice@example.org"]
roles = ["lead"]

[[member]]
id = "bob"
emails = ["bob@example.org"]
roles = ["lead"]

[[member]]
id = "carol"
emails = ["carol@example.org"]
roles = ["lead"]

[[member]]
id = "dave"
emails = ["dave@example.org"]
roles = ["analyst"]
"#;

/// A `script.toml` for a bash script on Linux.
pub fn bash_manifest(name: &str, file: &str) -> String {
    format!(
        "name = \"{name}\"\ndescription = \"{name} (test script)\"\nplatforms = [\"linux\"]\n\n[entry.linux]\nfile = \"{file}\"\ninterpreter = \"bash\"\n"
    )
}

/// A `script.toml` for a PowerShell script on Windows.
pub fn ps_manifest(name: &str, file: &str) -> String {
    format!(
        "name = \"{name}\"\ndescription = \"{name} (test script)\"\nplatforms = [\"windows\"]\n\n[entry.windows]\nfile = \"{file}\"\ninterpreter = \"powershell\"\n"
    )
}

/// `text` as UTF-16 LE with a BOM.
pub fn utf16le_bom(text: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

static CLOCK: AtomicI64 = AtomicI64::new(1_700_000_000);

fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args([
            "-c",
            "core.autocrlf=false",
            "-c",
            "core.safecrlf=false",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.org",
        ]);
    c
}

fn run(mut c: Command) -> String {
    let out = c.output().expect("run git");
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository for hand-written histories (a normal work tree; quiver reads its objects).
pub struct TestRepo {
    /// Work tree.
    pub dir: PathBuf,
}

impl TestRepo {
    /// `git init` in `dir` (created if needed) on branch `main`.
    pub fn init(dir: &Path) -> TestRepo {
        std::fs::create_dir_all(dir).expect("mkdir");
        let mut c = git_cmd(dir);
        c.args(["init", "-q", "-b", "main"]);
        run(c);
        TestRepo {
            dir: dir.to_path_buf(),
        }
    }

    /// Runs git with these arguments; returns stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let mut c = git_cmd(&self.dir);
        c.args(args);
        run(c)
    }

    fn git_as(&self, who: Who, args: &[&str]) -> String {
        let t = CLOCK.fetch_add(60, Ordering::SeqCst);
        let mut c = git_cmd(&self.dir);
        c.env("GIT_AUTHOR_NAME", who.name)
            .env("GIT_AUTHOR_EMAIL", who.email)
            .env("GIT_COMMITTER_NAME", who.name)
            .env("GIT_COMMITTER_EMAIL", who.email)
            .env("GIT_AUTHOR_DATE", format!("{t} +0000"))
            .env("GIT_COMMITTER_DATE", format!("{t} +0000"))
            .args(args);
        run(c)
    }

    /// Writes a file (parents created).
    pub fn write(&self, path: &str, bytes: impl AsRef<[u8]>) -> &Self {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
        self
    }

    /// Removes a file or folder.
    pub fn remove(&self, path: &str) -> &Self {
        let p = self.dir.join(path);
        if p.is_dir() {
            std::fs::remove_dir_all(p).expect("rm -r");
        } else {
            std::fs::remove_file(p).expect("rm");
        }
        self
    }

    /// Moves a file or folder with `git mv`.
    pub fn mv(&self, from: &str, to: &str) -> &Self {
        if let Some(parent) = self.dir.join(to).parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        self.git(&["mv", from, to]);
        self
    }

    /// Writes a bash script folder `library/<name>/` (manifest + `<name>.sh`).
    pub fn bash_script(&self, name: &str, body: &str) -> &Self {
        self.write(
            &format!("library/{name}/script.toml"),
            bash_manifest(name, &format!("{name}.sh")),
        );
        self.write(
            &format!("library/{name}/{name}.sh"),
            format!("#!/bin/bash\n{body}\n"),
        )
    }

    /// Commits everything as `who` on the current branch; returns the commit id.
    pub fn commit(&self, who: Who, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git_as(who, &["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }

    /// The current commit id.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    /// A pull request: branch `name` from `main`, `change` applied and committed by
    /// `author`, merged into `main` with `--no-ff` by `merger` with one `Approved-by:`
    /// trailer per approver. Returns the merge commit.
    pub fn pr(
        &self,
        name: &str,
        author: Who,
        change: impl FnOnce(&TestRepo),
        merger: Who,
        approvers: &[Who],
    ) -> String {
        self.git(&["checkout", "-q", "-b", name, "main"]);
        change(self);
        self.commit(author, &format!("{name}: change"));
        self.git(&["checkout", "-q", "main"]);
        self.merge(name, merger, approvers)
    }

    /// Merges `branch` into `main` with `--no-ff` and approval trailers.
    pub fn merge(&self, branch: &str, merger: Who, approvers: &[Who]) -> String {
        let mut msg = format!("Merge branch '{branch}'\n\n");
        for a in approvers {
            msg.push_str(&format!("Approved-by: {} <{}>\n", a.name, a.email));
        }
        self.git_as(merger, &["merge", "-q", "--no-ff", branch, "-m", &msg]);
        self.head()
    }

    /// A direct push to `main`: `change` committed by `author`.
    pub fn direct(&self, author: Who, change: impl FnOnce(&TestRepo), message: &str) -> String {
        self.git(&["checkout", "-q", "main"]);
        change(self);
        self.commit(author, message)
    }
}

/// What [`generate`] builds.
#[derive(Debug, Clone)]
pub struct GenSpec {
    /// Scripts in the first commit.
    pub scripts: usize,
    /// First-parent commits after the first one.
    pub commits: usize,
    /// Every n-th change is a direct push (0: never).
    pub direct_every: usize,
    /// Every n-th change moves a script folder (0: never).
    pub rename_every: usize,
    /// Every n-th script is PowerShell in UTF-16 LE with CRLF (0: never).
    pub utf16_every: usize,
    /// Pseudo-random seed.
    pub seed: u64,
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec {
            scripts: 100,
            commits: 200,
            direct_every: 10,
            rename_every: 50,
            utf16_every: 7,
            seed: 42,
        }
    }
}

/// What [`generate`] built.
#[derive(Debug, Clone, Default)]
pub struct GenStats {
    /// Merge commits on the first-parent line.
    pub merges: usize,
    /// Direct pushes.
    pub direct: usize,
    /// Folder moves.
    pub renames: usize,
}

const PEOPLE: [Who; 3] = [ALICE, BOB, CAROL];

/// Generates a repository at `dir` (a new bare-less repo, branch `main`) with `git
/// fast-import`: one commit with the policy and `spec.scripts` scripts, then
/// `spec.commits` first-parent commits, each changing one script through a merged
/// branch (with an `Approved-by:` trailer of another lead) or a direct push.
pub fn generate(dir: &Path, spec: &GenSpec) -> GenStats {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut c = git_cmd(dir);
    c.args(["init", "-q", "-b", "main"]);
    run(c);
    let mut s = Vec::<u8>::with_capacity(spec.commits * 600 + spec.scripts * 400);
    let mut rng = spec.seed.max(1);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut time = 1_600_000_000i64;
    let mut mark = 0usize;
    let data = |s: &mut Vec<u8>, path: &str, mode: &str, bytes: &[u8]| {
        writeln!(s, "M {mode} inline {path}").ok();
        writeln!(s, "data {}", bytes.len()).ok();
        s.extend_from_slice(bytes);
        s.push(b'\n');
    };
    // Folder of each script (moves change it) and its change counter.
    let mut dirs: Vec<String> = (0..spec.scripts).map(|i| format!("s{i:05}")).collect();
    let mut changes = vec![0usize; spec.scripts];
    let is_ps = |i: usize| spec.utf16_every > 0 && i % spec.utf16_every == spec.utf16_every - 1;
    let body = |i: usize, n: usize| -> (String, Vec<u8>) {
        if is_ps(i) {
            let mut text = String::from("Get-Process | Select-Object -First 5\r\n");
            for k in 0..n {
                text.push_str(&format!("Write-Output 'change {k}'\r\n"));
            }
            (format!("s{i:05}.ps1"), utf16le_bom(&text))
        } else {
            let mut text = String::from("#!/bin/bash\nps -eo pid,comm | head -n 5\n");
            for k in 0..n {
                text.push_str(&format!("echo 'change {k}'\n"));
            }
            (format!("s{i:05}.sh"), text.into_bytes())
        }
    };
    // The first commit: policy and every script.
    mark += 1;
    writeln!(s, "commit refs/heads/main\nmark :{mark}").ok();
    writeln!(s, "committer {} <{}> {time} +0000", ALICE.name, ALICE.email).ok();
    let msg = "Initial library";
    writeln!(s, "data {}\n{msg}", msg.len()).ok();
    data(
        &mut s,
        "policies/members.toml",
        "100644",
        MEMBERS_TOML.as_bytes(),
    );
    for (i, dir) in dirs.iter().enumerate() {
        let (file, bytes) = body(i, 0);
        let manifest = if is_ps(i) {
            ps_manifest(&format!("s{i:05}"), &file)
        } else {
            bash_manifest(&format!("s{i:05}"), &file)
        };
        data(
            &mut s,
            &format!("library/{dir}/script.toml"),
            "100644",
            manifest.as_bytes(),
        );
        data(&mut s, &format!("library/{dir}/{file}"), "100755", &bytes);
    }
    let mut main_mark = mark;
    let mut stats = GenStats::default();
    for n in 1..=spec.commits {
        time += 60;
        let i = (next() as usize) % spec.scripts.max(1);
        let author = PEOPLE[n % 3];
        let approver = PEOPLE[(n + 1) % 3];
        // The file commands of this change.
        let mut ops = Vec::<u8>::new();
        let rename = spec.rename_every > 0 && n % spec.rename_every == 0;
        if rename {
            let to = format!("moved/{}-{n}", dirs[i].rsplit('/').next().unwrap_or("x"));
            writeln!(ops, "R library/{} library/{to}", dirs[i]).ok();
            dirs[i] = to;
            stats.renames += 1;
        } else {
            changes[i] += 1;
            let (file, bytes) = body(i, changes[i]);
            data(
                &mut ops,
                &format!("library/{}/{file}", dirs[i]),
                "100755",
                &bytes,
            );
        }
        let direct = spec.direct_every > 0 && n % spec.direct_every == 0;
        if direct {
            mark += 1;
            writeln!(s, "commit refs/heads/main\nmark :{mark}").ok();
            writeln!(s, "author {} <{}> {time} +0000", author.name, author.email).ok();
            writeln!(
                s,
                "committer {} <{}> {time} +0000",
                author.name, author.email
            )
            .ok();
            let msg = format!("Direct change {n} to s{i:05}");
            writeln!(s, "data {}\n{msg}", msg.len()).ok();
            writeln!(s, "from :{main_mark}").ok();
            s.extend_from_slice(&ops);
            main_mark = mark;
            stats.direct += 1;
        } else {
            mark += 1;
            let topic = mark;
            writeln!(s, "commit refs/heads/topic\nmark :{topic}").ok();
            writeln!(s, "author {} <{}> {time} +0000", author.name, author.email).ok();
            writeln!(
                s,
                "committer {} <{}> {time} +0000",
                author.name, author.email
            )
            .ok();
            let msg = format!("Change {n} to s{i:05}");
            writeln!(s, "data {}\n{msg}", msg.len()).ok();
            writeln!(s, "from :{main_mark}").ok();
            s.extend_from_slice(&ops);
            mark += 1;
            writeln!(s, "commit refs/heads/main\nmark :{mark}").ok();
            writeln!(
                s,
                "author {} <{}> {time} +0000",
                approver.name, approver.email
            )
            .ok();
            writeln!(
                s,
                "committer {} <{}> {time} +0000",
                approver.name, approver.email
            )
            .ok();
            let msg = format!(
                "Merge change {n}\n\nApproved-by: {} <{}>\n",
                approver.name, approver.email
            );
            writeln!(s, "data {}\n{msg}", msg.len()).ok();
            writeln!(s, "from :{main_mark}\nmerge :{topic}").ok();
            s.extend_from_slice(&ops);
            main_mark = mark;
            stats.merges += 1;
        }
    }
    let mut c = git_cmd(dir);
    c.args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = c.spawn().expect("git fast-import");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&s)
        .expect("feed fast-import");
    let status = child.wait().expect("fast-import");
    assert!(status.success(), "git fast-import failed");
    stats
}

/// The `quiver` binary of this workspace, built once (same profile and target folder as
/// the running test).
pub fn quiver_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        let target = profile_dir.parent().expect("target").to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("debug")
            .to_string();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|p| p.join("crates/quiver").exists())
            .expect("workspace root")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut c = Command::new(cargo);
        c.current_dir(&root)
            .args([
                "build",
                "-q",
                "-p",
                "quiver",
                "--bin",
                "quiver",
                "--target-dir",
            ])
            .arg(&target);
        if profile == "release" {
            c.arg("--release");
        } else if profile != "debug" {
            c.args(["--profile", &profile]);
        }
        let status = c.status().expect("cargo build -p quiver");
        assert!(status.success(), "cargo build -p quiver failed");
        profile_dir.join(format!("quiver{}", std::env::consts::EXE_SUFFIX))
    })
    .clone()
}
