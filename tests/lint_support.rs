//! Shared by `lint_checks.rs` and `lint_sarif.rs`: a throw-away repository with a
//! `library/` and a `policies/` folder, built file by file, and a way to run the real
//! `quiver lint` on it.
//!
//! The fixture policy is the project's own `policies/rules.toml` (so the tests follow the
//! real content rules) plus one member and whatever a test adds.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary repository root holding `library/` and `policies/`.
pub struct Repo {
    dir: tempfile::TempDir,
}

/// The outcome of one `quiver lint` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub const MEMBERS: &str = r#"
[[member]]
id = "lead"
name = "Test Lead"
emails = ["lead@example.org"]
roles = ["lead"]

[[role]]
id = "lead"
permissions = ["author", "approve", "execute", "audit"]
"#;

impl Repo {
    /// An empty library governed by the real content rules and one member.
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("library")).expect("library/");
        std::fs::create_dir_all(dir.path().join("policies")).expect("policies/");
        let rules = quiver_tests::workspace_root().join("policies/rules.toml");
        let rules = std::fs::read_to_string(&rules)
            .unwrap_or_else(|e| panic!("{} is needed by the lint tests: {e}", rules.display()));
        let repo = Repo { dir };
        repo.policy("rules.toml", &rules);
        repo.policy("members.toml", MEMBERS);
        repo
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Path of a library file.
    pub fn lib_path(&self, rel: &str) -> PathBuf {
        self.root().join("library").join(rel)
    }

    /// Writes a library file (folders are created).
    pub fn file(&self, rel: &str, bytes: impl AsRef<[u8]>) -> &Repo {
        let path = self.lib_path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write library file");
        self
    }

    /// Writes (or replaces) a policy file.
    pub fn policy(&self, name: &str, text: &str) -> &Repo {
        std::fs::write(self.root().join("policies").join(name), text).expect("write policy");
        self
    }

    /// A one-platform script: `script.toml` plus its entry file.
    pub fn script(
        &self,
        name: &str,
        platform: &str,
        interpreter: &str,
        entry: &str,
        bytes: impl AsRef<[u8]>,
    ) -> &Repo {
        self.file(
            &format!("{name}/script.toml"),
            manifest(name, platform, interpreter, entry),
        );
        self.file(&format!("{name}/{entry}"), bytes)
    }

    /// Runs `quiver lint library <args>` from the repository root.
    pub fn lint(&self, args: &[&str]) -> Run {
        let out = Command::new(quiver_tests::bin("quiver"))
            .current_dir(self.root())
            .arg("lint")
            .arg("library")
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run quiver lint");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `quiver lint library --format json` and parses the report.
    pub fn lint_json(&self) -> (i32, Value) {
        let run = self.lint(&["--format", "json"]);
        let v: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("json report: {e}\n{}\n{}", run.stdout, run.stderr));
        (run.code, v)
    }
}

/// A minimal manifest.
pub fn manifest(name: &str, platform: &str, interpreter: &str, entry: &str) -> String {
    format!(
        "name = \"{name}\"\ndescription = \"fixture\"\nplatforms = [\"{platform}\"]\n\n[entry.{platform}]\nfile = \"{entry}\"\ninterpreter = \"{interpreter}\"\n"
    )
}

impl Run {
    /// The human report's lines that name `rule` (`file:line:col: severity rule: …`).
    pub fn lines_with(&self, rule: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.contains(&format!(" {rule}: ")))
            .collect()
    }

    /// Asserts a finding of `rule` at `location` (a `file` or `file:line` prefix).
    pub fn assert_finding(&self, rule: &str, location: &str) {
        let hit = self.lines_with(rule).into_iter().any(|l| {
            let l = l.trim_start();
            l.starts_with(&format!("{location}:")) || l.starts_with(&format!("{location} "))
        });
        assert!(
            hit,
            "expected `{rule}` at `{location}`; report:\n{}\n{}",
            self.stdout, self.stderr
        );
    }

    /// Asserts no finding of `rule` at all.
    pub fn assert_no(&self, rule: &str) {
        let lines = self.lines_with(rule);
        assert!(
            lines.is_empty(),
            "unexpected `{rule}`: {lines:?}; report:\n{}",
            self.stdout
        );
    }

    /// Asserts no finding of `rule` in files under `prefix`.
    pub fn assert_no_under(&self, rule: &str, prefix: &str) {
        let lines: Vec<&str> = self
            .lines_with(rule)
            .into_iter()
            .filter(|l| l.trim_start().starts_with(prefix))
            .collect();
        assert!(
            lines.is_empty(),
            "unexpected `{rule}` under {prefix}: {lines:?}; report:\n{}",
            self.stdout
        );
    }

    pub fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
    }
}

/// UTF-16 LE bytes with a BOM.
pub fn utf16le(text: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

/// UTF-16 BE bytes with a BOM.
pub fn utf16be(text: &str) -> Vec<u8> {
    let mut out = vec![0xFE, 0xFF];
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_be_bytes());
    }
    out
}

/// The findings of a JSON report, as `(rule, file, line)`.
pub fn findings(report: &Value) -> Vec<(String, String, Option<u64>)> {
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_string(),
                f["location"]["file"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                f["location"]["line"].as_u64(),
            )
        })
        .collect()
}
