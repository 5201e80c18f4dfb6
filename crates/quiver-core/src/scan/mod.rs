//! The scanner: findings on the exact bytes that will be delivered.
//!
//! (Interface fixed here; the checks are filled in by the scanner work.)

use crate::diag::{ConfigError, Location, Severity};
use crate::library::{Library, Script};
use crate::policy::Policy;
use serde::Serialize;

/// A waiver that downgraded a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedWaiver {
    /// Why the finding is acceptable.
    pub reason: String,
    /// Member id that granted it.
    pub by: String,
}

/// One finding: one file and one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Rule or built-in check id (e.g. `download-exec.iex-web`, `path.symlink`).
    pub rule: String,
    /// Effective severity (`info` when waived).
    pub severity: Severity,
    /// Severity as the rule states it.
    pub original_severity: Severity,
    /// Script the finding belongs to (None for library-wide findings).
    pub script: Option<String>,
    /// File (relative to the lint root or repository) and line/column.
    pub location: Location,
    /// What was found.
    pub message: String,
    /// What to do.
    pub help: String,
    /// The waiver that downgraded it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiver: Option<AppliedWaiver>,
}

impl Finding {
    /// True when the finding blocks the version (deny and not waived).
    pub fn blocks(&self) -> bool {
        self.severity == Severity::Deny
    }
}

/// The result of scanning a library.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanReport {
    /// All findings, ordered by script, file, line, rule.
    pub findings: Vec<Finding>,
    /// Number of scripts scanned.
    pub scripts: usize,
    /// Number of files scanned.
    pub files: usize,
    /// Bytes scanned.
    pub bytes: u64,
}

/// A scanner compiled from a policy (content rules compiled once).
pub struct Scanner {
    _policy: Policy,
}

impl Scanner {
    /// Compiles the policy's content rules.
    pub fn new(policy: &Policy) -> Result<Scanner, Vec<ConfigError>> {
        Ok(Scanner { _policy: policy.clone() })
    }

    /// Scans one script; `root` prefixes file locations (library folder or repo path).
    pub fn scan_script(&self, _root: &str, _script: &Script) -> Vec<Finding> {
        Vec::new()
    }

    /// Scans a whole library, including library-wide limits and broken manifests.
    pub fn scan_library(&self, lib: &Library) -> ScanReport {
        let mut report = ScanReport::default();
        for s in &lib.scripts {
            report.findings.extend(self.scan_script(&lib.root, s));
        }
        report.scripts = lib.scripts.len();
        report
    }
}
