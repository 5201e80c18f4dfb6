//! What `quiver lint` adds around the scanner: checks that need the folder as a whole
//! (files no script claims, policy globs that match nothing), a safety net for refused
//! manifests, and sizes stated from disk for files read only up to the cap.

use super::{MANIFEST_INVALID, UNCLAIMED, human_size, read};
use quiver_core::policy::glob_match;
use quiver_core::scan::Finding;
use quiver_core::{ConfigError, FileTree, Language, Library, Location, Policy, Severity};
use std::collections::{BTreeMap, BTreeSet};

/// Policy globs that match nothing in this library: a discovery rule that claims no
/// file, a waiver, group or role naming no script. Each is most likely a typo or a
/// leftover, and a waiver that outlived its script would silently waive a future one.
pub fn unmatched_globs(
    policy: &Policy,
    lib: &Library,
    tree: &FileTree,
    files: &[(String, String)],
) -> Vec<ConfigError> {
    let locate = |needle: &str| {
        files
            .iter()
            .map(|(file, text)| quiver_core::diag::find_value_location(file, text, needle))
            .find(|loc| loc.line.is_some())
            .unwrap_or_else(|| Location::file(files.first().map_or("policies", |f| f.0.as_str())))
    };
    let names: Vec<&str> = lib.scripts.iter().map(|s| s.name.as_str()).collect();
    let matches_script = |glob: &str| names.iter().any(|n| glob_match(glob, n));
    let mut out = Vec::new();
    for d in &policy.discovery {
        if !tree.iter().any(|(path, _)| d.is_match(path)) {
            out.push(ConfigError::new(
                locate(&d.glob),
                format!("discovery glob `{}` matches no file of the library", d.glob),
                Some("globs are relative to the library folder, e.g. `legacy/**/*.ps1`".into()),
            ));
        }
    }
    let mut unmatched = |what: String, glob: &str| {
        if glob != "*" && !matches_script(glob) {
            out.push(ConfigError::new(
                locate(glob),
                format!("{what}: `{glob}` matches no script of the library"),
                Some("fix the name, or remove the entry if the script is gone".into()),
            ));
        }
    };
    for w in &policy.waivers {
        unmatched(format!("waiver for `{}`", w.rule), &w.script);
    }
    for g in &policy.groups {
        for glob in &g.scripts {
            unmatched(format!("group `{}`", g.id), glob);
        }
    }
    for r in &policy.roles {
        for glob in &r.scripts {
            unmatched(format!("role `{}`", r.id), glob);
        }
    }
    out
}

/// Every refused manifest must show up as a blocking finding; the scanner reports them,
/// and anything it did not report is added here so no broken script passes silently.
pub fn add_broken_manifests(findings: &mut Vec<Finding>, lib: &Library) {
    let reported: BTreeSet<String> = findings
        .iter()
        .filter(|f| f.rule == MANIFEST_INVALID)
        .map(|f| f.location.file.clone())
        .collect();
    for broken in &lib.broken {
        for err in &broken.errors {
            if reported.contains(&err.location.file) {
                continue;
            }
            findings.push(Finding {
                rule: MANIFEST_INVALID.to_string(),
                severity: Severity::Deny,
                original_severity: Severity::Deny,
                script: None,
                location: err.location.clone(),
                message: err.message.clone(),
                help: err.hint.clone().unwrap_or_default(),
                waiver: None,
            });
        }
    }
}

/// Files outside every script folder and claimed by no discovery rule are never
/// delivered: most likely a forgotten `script.toml`. A warning for anything that looks
/// like a script, a note for documents; a `.git` folder is reported once, not per object.
pub fn add_unclaimed(findings: &mut Vec<Finding>, lib: &Library) {
    let mut git_dirs = BTreeSet::new();
    for path in &lib.unclaimed {
        let git = path
            .match_indices(".git/")
            .map(|(i, _)| i)
            .find(|&i| i == 0 || path.as_bytes()[i - 1] == b'/');
        let (file, severity, message) = match git {
            Some(i) => {
                let dir = &path[..i + 4];
                if !git_dirs.insert(dir.to_string()) {
                    continue;
                }
                (
                    dir.to_string(),
                    Severity::Warn,
                    "a git folder inside the library, outside every script".to_string(),
                )
            }
            None => {
                let severity = match Language::from_path(path) {
                    Language::Text => Severity::Info,
                    _ => Severity::Warn,
                };
                (
                    path.clone(),
                    severity,
                    "belongs to no script (no script.toml in its folder or above it, and no discovery rule claims it), so it is never delivered".to_string(),
                )
            }
        };
        findings.push(Finding {
            rule: UNCLAIMED.to_string(),
            severity,
            original_severity: severity,
            script: None,
            location: Location::file(file),
            message,
            help: "add a script.toml to its folder or a [[discovery]] rule that claims it, or move it out of the library".to_string(),
            waiver: None,
        });
    }
}

/// For files read only up to the cap, the size finding states the size on disk.
pub fn state_real_sizes(
    findings: &mut [Finding],
    truncated: &BTreeMap<String, u64>,
    root: &str,
    limit: u64,
) {
    if truncated.is_empty() {
        return;
    }
    let on_disk: BTreeMap<String, u64> = truncated
        .iter()
        .map(|(p, n)| (read::join_display(root, p), *n))
        .collect();
    for f in findings.iter_mut().filter(|f| f.rule == "limits.file-size") {
        if let Some(size) = on_disk.get(&f.location.file) {
            f.message = format!(
                "file is {} ({size} bytes) on disk, over limits.max_file_size of {} ({limit} bytes)",
                human_size(*size),
                human_size(limit)
            );
        }
    }
}
