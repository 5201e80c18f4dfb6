//! Shared by the `controller_*.rs` tests: a real library repository made with the git CLI,
//! a real `quiver controller` process on a free loopback port, and small HTTP helpers.
//!
//! The repository has two scripts (`ps` for Linux, `winusers` for Windows with CRLF and a
//! UTF-16 file) and a policy with four members: alice (author), bob (approver, analyst on
//! Linux), carol (auditor), dave (analyst on Windows only). Approved changes are merge
//! commits with an `Approved-by: Bob` trailer; direct pushes are plain commits on `main`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const POLICY: &str = r#"
[[member]]
id = "alice"
emails = ["alice@example.org"]
roles = ["author"]

[[member]]
id = "bob"
emails = ["bob@example.org"]
roles = ["approver", "analyst"]

[[member]]
id = "carol"
emails = ["carol@example.org"]
roles = ["auditor"]

[[member]]
id = "dave"
emails = ["dave@example.org"]
roles = ["windows-analyst"]

[[role]]
id = "author"
permissions = ["author"]

[[role]]
id = "approver"
permissions = ["approve"]

[[role]]
id = "analyst"
permissions = ["execute"]
groups = ["linux"]

[[role]]
id = "windows-analyst"
permissions = ["execute"]
groups = ["windows"]

[[role]]
id = "auditor"
permissions = ["audit"]

[[approval]]
min_approvals = 1

[[group]]
id = "linux"
platform = "linux"
scripts = ["*"]

[[group]]
id = "windows"
platform = "windows"
scripts = ["*"]
"#;

pub const PS_MANIFEST: &str = r#"name = "ps"
description = "process list"
platforms = ["linux"]

[entry.linux]
file = "ps.sh"
interpreter = "bash"

[[parameter]]
name = "full"
type = "bool"
default = "false"
"#;

pub const WIN_MANIFEST: &str = r#"name = "winusers"
description = "local users"
platforms = ["windows"]

[entry.windows]
file = "users.ps1"
interpreter = "powershell"
"#;

/// `users.ps1`: CRLF line endings, which must reach endpoints unchanged.
pub const WIN_PS1: &[u8] = b"Get-LocalUser\r\nGet-Date\r\n";

/// A UTF-16LE data file with a BOM, also delivered byte for byte.
pub fn utf16_notes() -> Vec<u8> {
    let mut b = vec![0xFF, 0xFE];
    for u in "n\u{f6}tes\r\n".encode_utf16() {
        b.extend_from_slice(&u.to_le_bytes());
    }
    b
}

/// A library repository in a temporary folder.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    /// The repository with its first commit (the trust anchor).
    pub fn new() -> TestRepo {
        let repo = TestRepo {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "Alice"]);
        repo.git(&["config", "user.email", "alice@example.org"]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo.write(".gitattributes", b"* -text\n");
        repo.write("policies/members.toml", POLICY.as_bytes());
        repo.write("library/ps/script.toml", PS_MANIFEST.as_bytes());
        repo.write("library/ps/ps.sh", b"#!/bin/bash\nps -ef\n");
        repo.write("library/winusers/script.toml", WIN_MANIFEST.as_bytes());
        repo.write("library/winusers/users.ps1", WIN_PS1);
        repo.write("library/winusers/notes.txt", &utf16_notes());
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "initial library"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs git in the repository and returns its stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(self.path())
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.path())
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    }

    /// A change on a branch, merged with `--no-ff` and an `Approved-by: Bob` trailer.
    pub fn approved_change(&self, branch: &str, files: &[(&str, &[u8])], msg: &str) -> String {
        self.git(&["checkout", "-q", "-b", branch]);
        for (p, b) in files {
            self.write(p, b);
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
        self.git(&["checkout", "-q", "main"]);
        self.git(&[
            "-c",
            "user.name=Bob",
            "-c",
            "user.email=bob@example.org",
            "merge",
            "-q",
            "--no-ff",
            "-m",
            &format!("Merge {branch}\n\nApproved-by: Bob <bob@example.org>"),
            branch,
        ]);
        self.head()
    }

    /// A commit straight onto `main` (no review).
    pub fn direct_push(&self, files: &[(&str, &[u8])], msg: &str) -> String {
        for (p, b) in files {
            self.write(p, b);
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
        self.head()
    }
}

/// Runs `quiver` with arguments and returns its output.
pub fn quiver(args: &[&str]) -> Output {
    Command::new(quiver_tests::bin("quiver"))
        .args(args)
        .output()
        .expect("run quiver")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A controller's folder: config, keys, state and publish dirs.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// A folder with a key pair (made by `quiver keygen`) and a `quiver.toml` for `repo`
    /// trusting its first commit; `extra` is appended to the config.
    pub fn new(repo: &TestRepo, extra: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = quiver(&[
            "keygen",
            "--out",
            dir.path().join("keys").to_str().expect("utf8"),
        ]);
        assert!(out.status.success(), "keygen: {out:?}");
        let s = Setup { dir };
        s.write_config(repo, extra);
        s
    }

    /// Another controller using the same key (copied).
    pub fn with_key_of(other: &Setup, repo: &TestRepo, extra: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
        for f in ["quiver.key", "quiver.pub"] {
            std::fs::copy(
                other.path().join("keys").join(f),
                dir.path().join("keys").join(f),
            )
            .expect("copy key");
        }
        let s = Setup { dir };
        s.write_config(repo, extra);
        s
    }

    pub fn write_config(&self, repo: &TestRepo, extra: &str) {
        let first = repo.git(&["rev-list", "--max-parents=0", "HEAD"]);
        let text = format!(
            "[repository]\npath = \"{}\"\n\n[trust]\ncommit = \"{first}\"\n\n[signing]\nsecret_key = \"keys/quiver.key\"\n\n{extra}\n",
            repo.path().display()
        );
        let text = if text.contains("[server]") {
            text
        } else {
            format!("{text}\n[server]\nlisten = \"127.0.0.1:0\"\n")
        };
        std::fs::write(self.config(), text).expect("write config");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn config(&self) -> PathBuf {
        self.path().join("quiver.toml")
    }
    pub fn config_str(&self) -> String {
        self.config().display().to_string()
    }
    pub fn audit_log(&self) -> PathBuf {
        self.path().join("state/audit.jsonl")
    }
    pub fn publish(&self) -> PathBuf {
        self.path().join("publish")
    }
    pub fn public_key(&self) -> quiver_catalog::PublicKey {
        let text = std::fs::read_to_string(self.path().join("keys/quiver.pub")).expect("pub");
        quiver_catalog::PublicKey::decode(&text).expect("public key")
    }

    /// `quiver token create --member ID`.
    pub fn member_token(&self, member: &str) -> String {
        let out = quiver(&[
            "token",
            "create",
            "--config",
            &self.config_str(),
            "--member",
            member,
        ]);
        assert!(out.status.success(), "token create: {out:?}");
        stdout(&out).trim().to_string()
    }

    /// `quiver token create --enroll`.
    pub fn enroll_token(&self) -> String {
        let out = quiver(&[
            "token",
            "create",
            "--config",
            &self.config_str(),
            "--enroll",
            "--uses",
            "5",
        ]);
        assert!(out.status.success(), "token create: {out:?}");
        stdout(&out).trim().to_string()
    }

    /// Starts `quiver controller` and waits until it listens.
    pub fn start(&self) -> Running {
        let log = std::fs::File::create(self.path().join("controller.log")).expect("log file");
        let mut child = Command::new(quiver_tests::bin("quiver"))
            .args(["controller", "--config", &self.config_str()])
            .env("QUIVER_LOG", "quiver_controller=debug,info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start controller");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "controller did not start: {line:?}\n{}",
                    std::fs::read_to_string(self.path().join("controller.log")).unwrap_or_default()
                )
            })
            .to_string();
        Running {
            child: Some(child),
            url,
            log: self.path().join("controller.log"),
        }
    }
}

/// A running controller; stopped (SIGTERM) when dropped.
pub struct Running {
    child: Option<Child>,
    pub url: String,
    pub log: PathBuf,
}

impl Running {
    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate().expect("controller was running")
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        client()
            .get(format!("{}{path}", self.url))
            .send()
            .expect("GET")
    }

    pub fn get_auth(&self, path: &str, token: &str) -> reqwest::blocking::Response {
        client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .expect("GET")
    }

    pub fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::blocking::Response {
        let mut req = client().post(format!("{}{path}", self.url)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().expect("POST")
    }

    /// The serial in the served timestamp.
    pub fn serial(&self) -> Option<u64> {
        let r = self.get("/v1/timestamp.json");
        if !r.status().is_success() {
            return None;
        }
        let v: serde_json::Value = r.json().ok()?;
        v["serial"].as_u64()
    }

    /// Waits until the served serial is `want`.
    pub fn wait_serial(&self, want: u64, within: Duration) -> Duration {
        let start = Instant::now();
        wait_until(&format!("serial {want}"), within, || {
            (self.serial() == Some(want)).then_some(())
        });
        start.elapsed()
    }

    pub fn status(&self, token: &str) -> serde_json::Value {
        self.get_auth("/v1/status", token)
            .json()
            .expect("status JSON")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.terminate();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("client")
}

/// Polls `f` until it returns `Some`, panicking after `within`.
pub fn wait_until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Audit records of a kind.
pub fn audit_records(log: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == kind)
        .collect()
}

/// Every regular file under `dir`, by `/`-separated relative path.
pub fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            if meta.is_dir() {
                walk(root, &p, out);
            } else {
                assert!(meta.is_file(), "{} is not a regular file", p.display());
                let rel = p.strip_prefix(root).expect("prefix");
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A `quiver-agent daemon` process; killed if still running when dropped.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(state: &Path, log: PathBuf) -> Daemon {
        let child = Command::new(quiver_tests::bin("quiver-agent"))
            .args(["daemon", "--state-dir"])
            .arg(state)
            // A short poll so revocation is noticed within the test's budget.
            .args(["--poll-wait", "2s", "--backoff-cap", "2s"])
            .env("QUIVER_AGENT_LOG", "quiver_agent=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("daemon log"))
            .spawn()
            .expect("start quiver-agent daemon");
        Daemon { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn assert_running(&mut self) {
        let status = self.child.try_wait().expect("try_wait");
        assert!(
            status.is_none(),
            "the daemon exited ({status:?}):\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
