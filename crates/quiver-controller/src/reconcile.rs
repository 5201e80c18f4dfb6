//! The reconcile decisions, as pure functions: desired state in, catalog and audit events
//! out. No git, no disk, no clock — the shell in [`crate::controller`] does the I/O around
//! them, so every rule here is tested on plain data.
//!
//! Architecture invariants:
//! - The catalog is a function of the approved state alone (`source_commit` is where the
//!   approved state last changed, not the head), so every replica and every restart builds
//!   the same bytes for the same history.
//! - The serial is `changes + offset`: the number of approved-state changes along the
//!   first-parent history plus an offset that only an acknowledged rewrite raises.
//! - One script that cannot be published (a name or path the catalog refuses) is left out
//!   with a reason; it never blocks the others.

use std::collections::BTreeMap;

use quiver_catalog::{
    Catalog, Entry, FileEntry, Group, Interpreter, Launch, Limits, ParamType, Parameter, Platform,
    RelPath, Risk, ScriptName, Sha256Hex,
};
use quiver_core::manifest as core;
use serde_json::json;

use crate::audit::AuditEvent;
use crate::source::{ApprovedScript, DesiredState};

/// A catalog built from a desired state.
#[derive(Debug, Clone)]
pub struct BuiltCatalog {
    /// The catalog.
    pub catalog: Catalog,
    /// Its canonical bytes (what is signed and published).
    pub bytes: Vec<u8>,
    /// Scripts left out, with why.
    pub skipped: Vec<(String, String)>,
    /// Blob id of every file digest in the catalog, to publish missing blobs.
    pub blobs: BTreeMap<String, String>,
}

/// The serial of a history with `changes` approved-state changes.
pub fn serial_for(changes: u64, offset: u64) -> u64 {
    changes.saturating_add(offset)
}

/// The offset to use after an acknowledged rewrite: unchanged if the new history already
/// yields a serial above everything published, else just high enough.
pub fn offset_after_ack(changes: u64, offset: u64, highest_published: Option<u64>) -> u64 {
    match highest_published {
        Some(h) if serial_for(changes, offset) <= h => (h + 1).saturating_sub(changes),
        _ => offset,
    }
}

fn platform(p: core::Platform) -> Platform {
    match p {
        core::Platform::Windows => Platform::Windows,
        core::Platform::Macos => Platform::Macos,
        core::Platform::Linux => Platform::Linux,
    }
}

fn interpreter(i: core::Interpreter) -> Interpreter {
    match i {
        core::Interpreter::Powershell => Interpreter::Powershell,
        core::Interpreter::Pwsh => Interpreter::Pwsh,
        core::Interpreter::Bash => Interpreter::Bash,
        core::Interpreter::Sh => Interpreter::Sh,
        core::Interpreter::Zsh => Interpreter::Zsh,
        core::Interpreter::Python3 => Interpreter::Python3,
        core::Interpreter::Executable => Interpreter::Executable,
    }
}

/// The catalog's risk for a manifest risk.
pub fn risk(r: core::Risk) -> Risk {
    match r {
        core::Risk::Low => Risk::Low,
        core::Risk::High => Risk::High,
    }
}

/// The core risk for a catalog risk (for policy questions about a catalog entry).
pub fn core_risk(r: Risk) -> core::Risk {
    match r {
        Risk::Low => core::Risk::Low,
        Risk::High => core::Risk::High,
    }
}

/// The core platform for a catalog platform.
pub fn core_platform(p: Platform) -> core::Platform {
    match p {
        Platform::Windows => core::Platform::Windows,
        Platform::Macos => core::Platform::Macos,
        Platform::Linux => core::Platform::Linux,
    }
}

fn param_type(t: core::ParamType) -> ParamType {
    match t {
        core::ParamType::String => ParamType::String,
        core::ParamType::Int => ParamType::Int,
        core::ParamType::Bool => ParamType::Bool,
        core::ParamType::Enum => ParamType::Enum,
        core::ParamType::Path => ParamType::Path,
    }
}

/// One catalog entry for an approved script, or why it cannot be published.
fn entry(d: &DesiredState, s: &ApprovedScript) -> Result<Entry, String> {
    let m = &s.manifest;
    let script = ScriptName::new(&s.name).map_err(|e| e.to_string())?;
    let platforms = m
        .entries
        .iter()
        .map(|(p, l)| {
            Ok((
                platform(*p),
                Launch {
                    file: RelPath::new(&l.file).map_err(|e| e.to_string())?,
                    interpreter: interpreter(l.interpreter),
                },
            ))
        })
        .collect::<Result<BTreeMap<_, _>, String>>()?;
    // Groups that get the script pre-staged and can run it: the policy's targets whose
    // platform is unset or one of the script's.
    let groups = d.policy.staged_groups(&s.name, &m.platforms);
    let files = s
        .files
        .iter()
        .map(|f| {
            Ok(FileEntry {
                path: RelPath::new(&f.path).map_err(|e| e.to_string())?,
                sha256: Sha256Hex::new(&f.sha256).map_err(|e| e.to_string())?,
                size: f.size,
                mode: if f.mode & 0o111 != 0 { 0o755 } else { 0o644 },
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let timeout = m.timeout.min(d.policy.limits.max_timeout);
    Ok(Entry {
        script,
        version: s.version,
        commit: s.commit.clone(),
        description: m.description.clone(),
        risk: risk(m.risk),
        platforms,
        groups,
        parameters: m
            .parameters
            .iter()
            .map(|p| Parameter {
                name: p.name.clone(),
                r#type: param_type(p.kind),
                required: p.required,
                default: p.default.clone(),
                values: p.values.clone(),
                description: p.description.clone(),
            })
            .collect(),
        timeout_secs: timeout.as_secs().max(1),
        output_limit: m.output_limit,
        files,
    })
}

/// Builds the catalog for `desired` at `serial`. Entries that the catalog format refuses
/// (checked one by one against `limits`) are skipped with a reason.
pub fn build_catalog(desired: &DesiredState, serial: u64, limits: &Limits) -> BuiltCatalog {
    let groups: Vec<Group> = desired
        .policy
        .groups
        .iter()
        .map(|g| Group {
            id: g.id.clone(),
            platform: g.platform.map(platform),
            labels: g.labels.clone(),
        })
        .collect();
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let mut blobs = BTreeMap::new();
    for s in &desired.scripts {
        let checked = entry(desired, s).and_then(|e| {
            let alone = Catalog::new(0, String::new(), String::new(), groups.clone(), vec![e]);
            alone.validate(limits).map_err(|err| err.to_string())?;
            Ok(alone.entries.into_iter().next().expect("one entry"))
        });
        match checked {
            Ok(e) => {
                for f in &s.files {
                    blobs.insert(f.sha256.clone(), f.blob.clone());
                }
                entries.push(e);
            }
            Err(reason) => skipped.push((s.name.clone(), format!("not publishable: {reason}"))),
        }
    }
    let mut catalog = Catalog::new(
        serial,
        desired.source_commit.clone(),
        desired.policy_commit.clone(),
        groups,
        entries,
    );
    // Whole-catalog limits (file count, total size) last: drop nothing silently.
    if let Err(e) = catalog.validate(limits) {
        skipped.push(("*".into(), format!("catalog is not publishable: {e}")));
    }
    catalog.normalize();
    let bytes = catalog.to_canonical_bytes();
    BuiltCatalog {
        catalog,
        bytes,
        skipped,
        blobs,
    }
}

/// What to do with a freshly built catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Same bytes as published: nothing to write.
    Unchanged,
    /// New bytes with a serial above everything published.
    Publish,
    /// New bytes but the serial does not grow (endpoints would refuse it as a rollback);
    /// needs an operator (`quiver rewrite ack`).
    SerialWouldNotGrow {
        /// Serial computed.
        serial: u64,
        /// Highest serial published.
        highest: u64,
    },
}

/// Decides whether to publish `bytes` at `serial`, given what is published now.
pub fn decide(
    bytes: &[u8],
    serial: u64,
    published: Option<&[u8]>,
    highest_published: Option<u64>,
) -> Decision {
    if published == Some(bytes) {
        return Decision::Unchanged;
    }
    match highest_published {
        Some(h) if serial <= h => Decision::SerialWouldNotGrow { serial, highest: h },
        _ => Decision::Publish,
    }
}

/// The audit events a desired state implies, each with the key that makes it happen once
/// (per script version, per pending change, per policy commit).
pub fn audit_events(d: &DesiredState) -> Vec<(String, AuditEvent)> {
    let mut out = Vec::new();
    for c in &d.policy_changes {
        out.push((
            format!("policy.changed:{}", c.commit),
            AuditEvent::new(
                "policy.changed",
                c.approvers.iter().chain(&c.authors).cloned().collect(),
                format!("policy@{}", c.commit),
                json!({"commit": c.commit, "approvers": c.approvers, "authors": c.authors}),
            ),
        ));
    }
    for v in &d.versions {
        out.push((
            format!("version.approved:{}:{}", v.script, v.version),
            AuditEvent::new(
                "version.approved",
                v.approvers.iter().chain(&v.authors).cloned().collect(),
                format!("{}@v{}", v.script, v.version),
                json!({
                    "script": v.script, "version": v.version, "commit": v.commit,
                    "digest": v.digest, "approvers": v.approvers, "authors": v.authors,
                    "time": v.time,
                }),
            ),
        ));
    }
    for p in &d.pending {
        let kind = match p.state.as_str() {
            "refused" => "change.refused",
            "held" => "change.held",
            _ => "change.drifted",
        };
        out.push((
            format!("{kind}:{}:{}", p.script, p.commit),
            AuditEvent::new(
                kind,
                p.authors.clone(),
                p.script.clone(),
                json!({"script": p.script, "commit": p.commit, "reason": p.reason}),
            ),
        ));
    }
    if let Some(e) = &d.policy_error {
        out.push((
            format!("policy.invalid:{}", e.commit),
            AuditEvent::new(
                "policy.invalid",
                vec!["controller".into()],
                format!("policy@{}", e.commit),
                json!({"commit": e.commit, "errors": e.errors,
                       "in_effect": d.policy_commit}),
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{PendingChange, PolicyProblem, SourceFile, VersionEvent};
    use quiver_core::Policy;
    use std::sync::Arc;

    const POLICY: &str = r#"
[[group]]
id = "linux"
platform = "linux"
scripts = ["*"]
[[group]]
id = "windows"
platform = "windows"
scripts = ["*"]
[[group]]
id = "all"
scripts = ["ps*"]
[limits]
max_timeout = "5m"
"#;

    fn manifest(name: &str, timeout: &str) -> core::Manifest {
        core::Manifest::parse(
            "script.toml",
            &format!(
                "name = \"{name}\"\nplatforms = [\"linux\"]\ntimeout = \"{timeout}\"\n[entry.linux]\nfile = \"run.sh\"\ninterpreter = \"bash\"\n"
            ),
        )
        .expect("manifest")
    }

    fn script(name: &str, version: u32, file: &str) -> ApprovedScript {
        ApprovedScript {
            name: name.into(),
            version,
            commit: format!("c{version}"),
            manifest: manifest(name, "1h"),
            files: vec![SourceFile {
                path: file.into(),
                sha256: "ab".repeat(32),
                size: 3,
                mode: 0o100755,
                blob: "b1".into(),
            }],
        }
    }

    fn state(scripts: Vec<ApprovedScript>) -> DesiredState {
        let policy = Policy::load(&[("policies/p.toml".into(), POLICY.into())])
            .expect("policy")
            .policy;
        DesiredState {
            branch: "main".into(),
            head: "h".into(),
            source_commit: "c2".into(),
            policy_commit: "p1".into(),
            changes: 2,
            policy: Arc::new(policy),
            policy_error: None,
            scripts,
            statuses: vec![],
            versions: vec![],
            pending: vec![],
            policy_changes: vec![],
        }
    }

    #[test]
    fn entries_follow_manifest_and_policy() {
        let d = state(vec![script("ps", 2, "run.sh")]);
        let built = build_catalog(&d, 7, &Limits::default());
        assert!(built.skipped.is_empty(), "{:?}", built.skipped);
        let e = &built.catalog.entries[0];
        // Only groups for the script's platform (or any platform).
        assert_eq!(e.groups, ["all", "linux"]);
        // Timeout capped by policy limits.max_timeout.
        assert_eq!(e.timeout_secs, 300);
        assert_eq!(e.files[0].mode, 0o755);
        assert_eq!(built.catalog.serial, 7);
        assert_eq!(built.catalog.source_commit, "c2");
        assert_eq!(
            built.blobs.get(&"ab".repeat(32)).map(String::as_str),
            Some("b1")
        );
    }

    #[test]
    fn same_state_same_bytes_and_bad_scripts_are_skipped_alone() {
        let a = state(vec![script("ps", 2, "run.sh"), script("zz", 1, "../x")]);
        let mut b = a.clone();
        b.scripts.reverse();
        b.head = "another-head".into();
        let (x, y) = (
            build_catalog(&a, 3, &Limits::default()),
            build_catalog(&b, 3, &Limits::default()),
        );
        assert_eq!(x.bytes, y.bytes, "head is not part of the catalog");
        assert_eq!(x.catalog.entries.len(), 1);
        assert_eq!(x.skipped.len(), 1);
        assert!(
            x.skipped[0].1.contains("not publishable"),
            "{:?}",
            x.skipped
        );
    }

    #[test]
    fn publish_only_changed_bytes_with_a_growing_serial() {
        assert_eq!(decide(b"a", 3, Some(b"a"), Some(3)), Decision::Unchanged);
        assert_eq!(decide(b"b", 4, Some(b"a"), Some(3)), Decision::Publish);
        assert_eq!(decide(b"b", 4, None, None), Decision::Publish);
        assert_eq!(
            decide(b"b", 3, Some(b"a"), Some(3)),
            Decision::SerialWouldNotGrow {
                serial: 3,
                highest: 3
            }
        );
    }

    #[test]
    fn acknowledged_rewrite_raises_the_offset_just_enough() {
        assert_eq!(offset_after_ack(5, 0, Some(9)), 5);
        assert_eq!(serial_for(5, offset_after_ack(5, 0, Some(9))), 10);
        assert_eq!(offset_after_ack(12, 0, Some(9)), 0);
        assert_eq!(offset_after_ack(1, 0, None), 0);
    }

    #[test]
    fn audit_events_are_keyed_once_per_fact() {
        let mut d = state(vec![]);
        d.versions.push(VersionEvent {
            script: "ps".into(),
            version: 1,
            commit: "c1".into(),
            digest: "d".into(),
            authors: vec!["a@x".into()],
            approvers: vec!["bob".into()],
            time: "t".into(),
        });
        d.pending.push(PendingChange {
            script: "ps".into(),
            commit: "c3".into(),
            state: "drifted".into(),
            reason: "direct push".into(),
            authors: vec![],
        });
        d.policy_error = Some(PolicyProblem {
            commit: "c4".into(),
            errors: vec!["policies/p.toml:3:1: bad".into()],
        });
        let keys: Vec<String> = audit_events(&d).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "version.approved:ps:1",
                "change.drifted:ps:c3",
                "policy.invalid:c4"
            ]
        );
    }
}
