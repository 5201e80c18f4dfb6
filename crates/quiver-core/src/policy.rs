//! Policies: the TOML files under `policies/` that govern a library.
//!
//! Several files, one concern each (members, roles, approvals, validation, retention,
//! targets, discovery); any file may hold any section, lists are concatenated in file-name
//! order, and the single-valued tables (`[limits]`, `[removal]`, `[retention]`,
//! `[validation]`) may appear in one file only, so no setting is silently overridden.

use crate::diag::{ConfigError, Location, find_value_location};
use crate::manifest::{Interpreter, Language, Platform, Risk, SizeValue, parse_duration};
use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Ids of the checks built into the scanner (content rules come from policy).
pub const BUILTIN_CHECKS: &[(&str, &str)] = &[
    (
        "limits.file-size",
        "a file is larger than limits.max_file_size",
    ),
    (
        "limits.script-count",
        "the library has more scripts than limits.max_scripts",
    ),
    (
        "limits.library-size",
        "the library is larger than limits.max_library_size",
    ),
    (
        "limits.timeout",
        "a manifest timeout exceeds limits.max_timeout",
    ),
    ("path.symlink", "a symbolic link inside a script folder"),
    (
        "path.traversal",
        "a path with `..` that leaves the script folder",
    ),
    ("path.absolute", "an absolute path"),
    ("path.git", "a `.git*` entry inside the library"),
    ("path.submodule", "a git submodule inside the library"),
    (
        "path.case-collision",
        "two paths that are equal ignoring case",
    ),
    ("path.windows-invalid", "a name Windows cannot store"),
    (
        "file.type",
        "a file type not in validation.allowed_extensions",
    ),
    (
        "encoding.crlf",
        "CRLF line endings in a shell or Python script",
    ),
    (
        "encoding.ps1-non-ascii-no-bom",
        "non-ASCII text in a .ps1 without a BOM",
    ),
    ("encoding.nul", "NUL bytes in a text script"),
    ("encoding.invalid", "text that is not valid UTF-8 or UTF-16"),
    ("shell.no-shebang", "a shell entry without a `#!` line"),
    ("syntax.powershell", "a PowerShell parse error"),
    ("syntax.shell", "a shell parse error"),
    (
        "syntax.skipped",
        "an entry file too large to parse (syntax and command rules skipped)",
    ),
    (
        "signature.missing",
        "an executable without a `.minisig` signature",
    ),
    (
        "signature.invalid",
        "an executable whose signature does not verify",
    ),
    (
        "signature.untrusted",
        "an executable signed by a key not pinned in policy",
    ),
    (
        "manifest.invalid",
        "a script.toml that does not parse or validate",
    ),
    (
        "manifest.entry-missing",
        "an entry file named in script.toml that does not exist",
    ),
];

/// What a role lets its members do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Propose changes to scripts.
    Author,
    /// Approve changes to scripts (counts toward approval rules).
    Approve,
    /// Run scripts on endpoints.
    Execute,
    /// Read the audit log and run records.
    Audit,
}

/// Approval evidence kinds, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceKind {
    /// The change entered through a merge commit.
    Merge,
    /// Merge commit with `Approved-by:` / `Reviewed-by:` trailers of eligible members.
    Trailers,
    /// Reviews read from the forge's API.
    Forge,
}

/// A person who can author, approve, run or audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Stable id, referenced by waivers and tokens.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Emails used in commits and trailers (compared case-insensitively).
    #[serde(default)]
    pub emails: Vec<String>,
    /// Logins on forges, e.g. `{ github = "alice" }`.
    #[serde(default)]
    pub forge: BTreeMap<String, String>,
    /// SSH public keys (`ssh-ed25519 AAAA…`) accepted for signed merge commits.
    #[serde(default)]
    pub signing_keys: Vec<String>,
    /// Role ids.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A set of permissions on some scripts and device groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Stable id.
    pub id: String,
    /// What the role is for.
    #[serde(default)]
    pub description: String,
    /// Granted permissions.
    pub permissions: Vec<Permission>,
    /// Script name globs the permissions apply to.
    #[serde(default = "all")]
    pub scripts: Vec<String>,
    /// Device group ids (or `*`) where `execute` applies.
    #[serde(default = "all")]
    pub groups: Vec<String>,
    /// Highest script risk this role may execute.
    #[serde(default = "high")]
    pub max_risk: Risk,
}

fn all() -> Vec<String> {
    vec!["*".to_string()]
}
fn high() -> Risk {
    Risk::High
}
fn one() -> u32 {
    1
}
fn trailers() -> EvidenceKind {
    EvidenceKind::Trailers
}

/// What a change needs before it is approved. Every rule that matches a change applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    /// Name shown in reasons.
    #[serde(default)]
    pub id: Option<String>,
    /// Script name globs this rule covers (ignored when `policy = true`).
    #[serde(default = "all")]
    pub scripts: Vec<String>,
    /// Only scripts of this risk.
    #[serde(default)]
    pub risk: Option<Risk>,
    /// The rule governs changes to `policies/` instead of scripts.
    #[serde(default)]
    pub policy: bool,
    /// Distinct eligible approvers needed.
    #[serde(default = "one")]
    pub min_approvals: u32,
    /// Roles whose members count; empty means any member whose role grants `approve`.
    #[serde(default)]
    pub approver_roles: Vec<String>,
    /// Whether an author of the change may approve it.
    #[serde(default)]
    pub allow_self_approval: bool,
    /// The evidence that must be present.
    #[serde(default = "trailers")]
    pub evidence: EvidenceKind,
    /// The merge commit must carry a valid SSH signature by a member's key.
    #[serde(default)]
    pub require_signature: bool,
}

/// Guard against a change that removes most of the library at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovalGuard {
    /// Largest share of scripts (0.0–1.0) one change may remove.
    #[serde(default = "half")]
    pub max_share: f64,
    /// Allow a larger removal (set in the policy of the approved state before it).
    #[serde(default)]
    pub allow: bool,
    /// A change with at least this many approvals may remove more.
    #[serde(default)]
    pub min_approvals: Option<u32>,
}

fn half() -> f64 {
    0.5
}

impl Default for RemovalGuard {
    fn default() -> Self {
        RemovalGuard {
            max_share: 0.5,
            allow: false,
            min_approvals: None,
        }
    }
}

/// Raw size and count limits as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_file_size: Option<SizeValue>,
    max_scripts: Option<u64>,
    max_library_size: Option<SizeValue>,
    max_timeout: Option<String>,
}

/// Size, count and time limits the scanner enforces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Largest file in bytes (default 20 MiB, as Defender's library API).
    pub max_file_size: u64,
    /// Most scripts in the library (default 10,000).
    pub max_scripts: u64,
    /// Largest library in bytes (default 2 GiB).
    pub max_library_size: u64,
    /// Longest timeout a manifest may declare (default 2 h).
    #[serde(skip)]
    pub max_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: 20 * 1024 * 1024,
            max_scripts: 10_000,
            max_library_size: 2 * 1024 * 1024 * 1024,
            max_timeout: Duration::from_secs(2 * 3600),
        }
    }
}

/// General validation settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSettings {
    /// Allowed file extensions (lowercase, without dot; `""` for none). Unset allows all.
    #[serde(default)]
    pub allowed_extensions: Option<Vec<String>>,
}

/// A minisign public key trusted to sign executables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherKey {
    /// Name shown in findings.
    pub id: String,
    /// The minisign public key (the `RW…` base64 line).
    pub key: String,
}

/// A content rule: a regex over decoded text, or a command matched on the syntax tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentRule {
    /// Stable id, used in findings and waivers.
    pub id: String,
    /// Languages it applies to; empty means all text.
    #[serde(default)]
    pub languages: Vec<Language>,
    /// Regex matched line by line against decoded text.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Command names matched on the syntax tree (case-insensitive; backticks removed).
    #[serde(default)]
    pub commands: Vec<String>,
    /// With `commands`: a regex the command's arguments must match (default: any).
    #[serde(default)]
    pub args_pattern: Option<String>,
    /// How serious a match is.
    pub severity: crate::diag::Severity,
    /// What was found.
    pub message: String,
    /// What to do instead.
    #[serde(default)]
    pub help: String,
}

/// A reasoned exception that downgrades one rule's findings for one script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    /// Script name (glob).
    pub script: String,
    /// Rule or check id.
    pub rule: String,
    /// Only this file of the script (relative to its folder); default all files.
    #[serde(default)]
    pub file: Option<String>,
    /// Why it is acceptable.
    pub reason: String,
    /// Member id of who granted it.
    pub by: String,
}

/// Raw retention section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    execution_records: Option<String>,
    execution_output: Option<String>,
    audit_payloads: Option<String>,
    cached_versions: Option<u32>,
}

/// How long operational records are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Run records (default 90 days).
    pub execution_records: Duration,
    /// Captured run output (default 30 days).
    pub execution_output: Duration,
    /// Audit record payloads; digests stay forever (default 365 days).
    pub audit_payloads: Duration,
    /// Previous snapshots kept on each endpoint (default 3).
    pub cached_versions: u32,
}

impl Default for Retention {
    fn default() -> Self {
        let day = 86_400;
        Retention {
            execution_records: Duration::from_secs(90 * day),
            execution_output: Duration::from_secs(30 * day),
            audit_payloads: Duration::from_secs(365 * day),
            cached_versions: 3,
        }
    }
}

/// A device group (target) and what it gets pre-staged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Stable id.
    pub id: String,
    /// What the group is.
    #[serde(default)]
    pub description: String,
    /// Platform the devices run; unset means any.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Labels every member device carries.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Script name globs pre-staged on these devices.
    #[serde(default)]
    pub scripts: Vec<String>,
}

impl Group {
    /// Whether a device with this platform and labels belongs to the group.
    pub fn matches(&self, platform: Platform, labels: &BTreeMap<String, String>) -> bool {
        self.platform.is_none_or(|p| p == platform)
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// Raw discovery rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    glob: String,
    platform: Platform,
    interpreter: Interpreter,
    #[serde(default)]
    risk: Risk,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    output_limit: Option<SizeValue>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    description: String,
}

/// Turns files without manifests into scripts: name from the path, defaults from the rule.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveryRule {
    /// Glob over paths relative to the library root, e.g. `legacy/**/*.ps1`.
    pub glob: String,
    /// Platform of matched files.
    pub platform: Platform,
    /// Interpreter of matched files.
    pub interpreter: Interpreter,
    /// Risk of the discovered scripts.
    pub risk: Risk,
    /// Timeout of the discovered scripts.
    #[serde(skip)]
    pub timeout: Duration,
    /// Output limit of the discovered scripts.
    pub output_limit: u64,
    /// Tags given to discovered scripts.
    pub tags: Vec<String>,
    /// Description given to discovered scripts.
    pub description: String,
    #[serde(skip)]
    pub(crate) matcher: GlobMatcher,
}

impl DiscoveryRule {
    /// Whether the rule claims this library path.
    pub fn is_match(&self, path: &str) -> bool {
        self.matcher.is_match(path)
    }
}

/// One policy file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    member: Vec<Member>,
    #[serde(default)]
    role: Vec<Role>,
    #[serde(default)]
    approval: Vec<ApprovalRule>,
    removal: Option<RemovalGuard>,
    limits: Option<RawLimits>,
    validation: Option<ValidationSettings>,
    #[serde(default)]
    publisher_key: Vec<PublisherKey>,
    #[serde(default)]
    rule: Vec<ContentRule>,
    #[serde(default)]
    waiver: Vec<Waiver>,
    retention: Option<RawRetention>,
    #[serde(default)]
    group: Vec<Group>,
    #[serde(default)]
    discovery: Vec<RawDiscovery>,
}

/// The merged, validated policy of a library.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Policy {
    /// People.
    pub members: Vec<Member>,
    /// Roles.
    pub roles: Vec<Role>,
    /// Approval rules; all matching rules apply.
    pub approvals: Vec<ApprovalRule>,
    /// Mass-removal guard.
    pub removal: RemovalGuard,
    /// Scanner limits.
    pub limits: Limits,
    /// General validation settings.
    pub validation: ValidationSettings,
    /// Keys trusted to sign executables.
    pub publisher_keys: Vec<PublisherKey>,
    /// Content rules.
    pub rules: Vec<ContentRule>,
    /// Waivers.
    pub waivers: Vec<Waiver>,
    /// Retention.
    pub retention: Retention,
    /// Device groups.
    pub groups: Vec<Group>,
    /// Discovery rules.
    pub discovery: Vec<DiscoveryRule>,
    /// Policy files it was read from, in order.
    pub files: Vec<String>,
}

/// A policy that loaded with warnings (e.g. a glob that matches nothing is checked later).
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The policy.
    pub policy: Policy,
    /// Non-fatal problems.
    pub warnings: Vec<ConfigError>,
}

impl Policy {
    /// Parses and merges policy files given as `(path, text)` in any order; they are
    /// merged in path order. All errors are returned, not only the first.
    pub fn load(files: &[(String, String)]) -> Result<LoadedPolicy, Vec<ConfigError>> {
        let mut files: Vec<&(String, String)> = files.iter().collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut errors = Vec::new();
        let mut policy = Policy::default();
        let mut singles: BTreeMap<&str, &str> = BTreeMap::new();
        let mut texts: BTreeMap<&str, &str> = BTreeMap::new();
        // Where each id was defined, so cross-reference errors point at a file and line.
        let mut origin: BTreeMap<(&'static str, String), &str> = BTreeMap::new();
        for (path, text) in &files {
            texts.insert(path.as_str(), text.as_str());
            let parsed: PolicyFile = match toml::from_str(text) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(ConfigError::from_toml(path, text, &e));
                    continue;
                }
            };
            policy.files.push(path.clone());
            let mut single = |name: &'static str, present: bool, errors: &mut Vec<ConfigError>| {
                if !present {
                    return false;
                }
                if let Some(first) = singles.insert(name, path.as_str()) {
                    errors.push(ConfigError::new(
                        find_value_location(path, text, name).line.map_or_else(
                            || Location::file(path.as_str()),
                            |_| find_value_location(path, text, name),
                        ),
                        format!("[{name}] is also defined in {first}"),
                        Some("keep each single-valued table in one policy file".into()),
                    ));
                    return false;
                }
                true
            };
            if single("removal", parsed.removal.is_some(), &mut errors) {
                policy.removal = parsed.removal.clone().unwrap_or_default();
            }
            if single("validation", parsed.validation.is_some(), &mut errors) {
                policy.validation = parsed.validation.clone().unwrap_or_default();
            }
            if single("limits", parsed.limits.is_some(), &mut errors) {
                let raw = parsed.limits.clone().unwrap_or_default();
                let mut limits = Limits::default();
                let mut size = |v: &Option<SizeValue>, key: &str, slot: &mut u64| {
                    if let Some(v) = v {
                        match v.to_bytes() {
                            Ok(n) => *slot = n,
                            Err(msg) => errors.push(ConfigError::new(
                                find_value_location(path, text, key),
                                format!("limits.{key}: {msg}"),
                                None,
                            )),
                        }
                    }
                };
                size(
                    &raw.max_file_size,
                    "max_file_size",
                    &mut limits.max_file_size,
                );
                size(
                    &raw.max_library_size,
                    "max_library_size",
                    &mut limits.max_library_size,
                );
                if let Some(n) = raw.max_scripts {
                    limits.max_scripts = n;
                }
                if let Some(t) = &raw.max_timeout {
                    match parse_duration(t) {
                        Ok(d) => limits.max_timeout = d,
                        Err(msg) => errors.push(ConfigError::new(
                            find_value_location(path, text, t),
                            format!("limits.max_timeout: {msg}"),
                            None,
                        )),
                    }
                }
                policy.limits = limits;
            }
            if single("retention", parsed.retention.is_some(), &mut errors) {
                let raw = parsed.retention.clone().unwrap_or_default();
                let mut r = Retention::default();
                for (key, value, slot) in [
                    (
                        "execution_records",
                        &raw.execution_records,
                        &mut r.execution_records,
                    ),
                    (
                        "execution_output",
                        &raw.execution_output,
                        &mut r.execution_output,
                    ),
                    ("audit_payloads", &raw.audit_payloads, &mut r.audit_payloads),
                ] {
                    if let Some(v) = value {
                        match parse_duration(v) {
                            Ok(d) => *slot = d,
                            Err(msg) => errors.push(ConfigError::new(
                                find_value_location(path, text, v),
                                format!("retention.{key}: {msg}"),
                                None,
                            )),
                        }
                    }
                }
                if let Some(n) = raw.cached_versions {
                    r.cached_versions = n;
                }
                policy.retention = r;
            }
            for (kind, ids) in [
                (
                    "member",
                    parsed
                        .member
                        .iter()
                        .map(|m| m.id.clone())
                        .collect::<Vec<_>>(),
                ),
                ("role", parsed.role.iter().map(|m| m.id.clone()).collect()),
                ("rule", parsed.rule.iter().map(|m| m.id.clone()).collect()),
                ("group", parsed.group.iter().map(|m| m.id.clone()).collect()),
                (
                    "publisher_key",
                    parsed.publisher_key.iter().map(|m| m.id.clone()).collect(),
                ),
            ] {
                for id in ids {
                    if let Some(first) = origin.insert((kind, id.clone()), path.as_str()) {
                        errors.push(ConfigError::new(
                            find_value_location(path, text, &id),
                            format!("{kind} `{id}` is defined twice (also in {first})"),
                            Some("ids must be unique across all policy files".into()),
                        ));
                    }
                }
            }
            for d in parsed.discovery {
                let matcher = match Glob::new(&d.glob) {
                    Ok(g) => g.compile_matcher(),
                    Err(e) => {
                        errors.push(ConfigError::new(
                            find_value_location(path, text, &d.glob),
                            format!("discovery glob `{}`: {e}", d.glob),
                            None,
                        ));
                        continue;
                    }
                };
                let timeout = match d.timeout.as_deref().map(parse_duration) {
                    None => crate::manifest::DEFAULT_TIMEOUT,
                    Some(Ok(t)) => t,
                    Some(Err(msg)) => {
                        errors.push(ConfigError::new(
                            find_value_location(path, text, &d.glob),
                            format!("discovery timeout: {msg}"),
                            None,
                        ));
                        continue;
                    }
                };
                let output_limit = match d.output_limit.as_ref().map(SizeValue::to_bytes) {
                    None => crate::manifest::DEFAULT_OUTPUT_LIMIT,
                    Some(Ok(n)) => n,
                    Some(Err(msg)) => {
                        errors.push(ConfigError::new(
                            find_value_location(path, text, &d.glob),
                            format!("discovery output_limit: {msg}"),
                            None,
                        ));
                        continue;
                    }
                };
                policy.discovery.push(DiscoveryRule {
                    glob: d.glob,
                    platform: d.platform,
                    interpreter: d.interpreter,
                    risk: d.risk,
                    timeout,
                    output_limit,
                    tags: d.tags,
                    description: d.description,
                    matcher,
                });
            }
            policy.members.extend(parsed.member);
            policy.roles.extend(parsed.role);
            policy.approvals.extend(parsed.approval);
            policy.publisher_keys.extend(parsed.publisher_key);
            policy.rules.extend(parsed.rule);
            policy.waivers.extend(parsed.waiver);
            policy.groups.extend(parsed.group);
        }
        let warnings = Vec::new();
        if errors.is_empty() {
            policy.check_references(&origin, &texts, &mut errors);
        }
        if errors.is_empty() {
            Ok(LoadedPolicy { policy, warnings })
        } else {
            Err(errors)
        }
    }

    fn check_references(
        &self,
        origin: &BTreeMap<(&'static str, String), &str>,
        texts: &BTreeMap<&str, &str>,
        errors: &mut Vec<ConfigError>,
    ) {
        let roles: BTreeSet<&str> = self.roles.iter().map(|r| r.id.as_str()).collect();
        let members: BTreeSet<&str> = self.members.iter().map(|m| m.id.as_str()).collect();
        let groups: BTreeSet<&str> = self.groups.iter().map(|g| g.id.as_str()).collect();
        let rule_ids: BTreeSet<&str> = self
            .rules
            .iter()
            .map(|r| r.id.as_str())
            .chain(BUILTIN_CHECKS.iter().map(|(id, _)| *id))
            .collect();
        // Locate a reference: search every policy file for the quoted value, preferring
        // the file that defined the referring item.
        let locate = |home: Option<&str>, needle: &str| -> Location {
            if let Some(h) = home
                && let Some(text) = texts.get(h)
            {
                let loc = find_value_location(h, text, needle);
                if loc.line.is_some() {
                    return loc;
                }
            }
            for (file, text) in texts {
                let loc = find_value_location(file, text, needle);
                if loc.line.is_some() {
                    return loc;
                }
            }
            Location::file(home.unwrap_or("policies/"))
        };
        // The same, inside the item whose id is `item` (a value several items repeat).
        let locate_in = |home: Option<&str>, item: &str, needle: &str| -> Location {
            match home.and_then(|h| texts.get(h).map(|t| (h, *t))) {
                Some((h, text)) => {
                    let loc = crate::diag::find_value_location_after(h, text, item, needle);
                    if loc.line.is_some() {
                        loc
                    } else {
                        locate(home, needle)
                    }
                }
                None => locate(home, needle),
            }
        };
        for m in &self.members {
            let home = origin.get(&("member", m.id.clone())).copied();
            for r in &m.roles {
                if !roles.contains(r.as_str()) {
                    errors.push(ConfigError::new(
                        locate_in(home, &m.id, r),
                        format!("member `{}` has unknown role `{r}`", m.id),
                        Some(format!(
                            "define [[role]] id = \"{r}\" or fix the name; known: {roles:?}"
                        )),
                    ));
                }
            }
            for k in &m.signing_keys {
                if !k.starts_with("ssh-") && !k.starts_with("ecdsa-") && !k.starts_with("sk-") {
                    errors.push(ConfigError::new(
                        locate(home, &m.id),
                        format!(
                            "member `{}`: signing key is not an OpenSSH public key",
                            m.id
                        ),
                        Some("paste the line from id_ed25519.pub".into()),
                    ));
                }
            }
        }
        for r in &self.roles {
            let home = origin.get(&("role", r.id.clone())).copied();
            for g in &r.groups {
                if g != "*" && !groups.contains(g.as_str()) {
                    errors.push(ConfigError::new(
                        locate_in(home, &r.id, g),
                        format!("role `{}` names unknown device group `{g}`", r.id),
                        Some(format!(
                            "define [[group]] id = \"{g}\" or use \"*\"; known: {groups:?}"
                        )),
                    ));
                }
            }
            for s in &r.scripts {
                if let Err(e) = Glob::new(s) {
                    errors.push(ConfigError::new(
                        locate_in(home, &r.id, s),
                        format!("role `{}`: bad glob: {e}", r.id),
                        None,
                    ));
                }
            }
        }
        for a in &self.approvals {
            for r in &a.approver_roles {
                if !roles.contains(r.as_str()) {
                    errors.push(ConfigError::new(
                        locate(None, r),
                        format!("approval rule names unknown role `{r}` in approver_roles"),
                        Some(format!("known roles: {roles:?}")),
                    ));
                }
            }
            for s in &a.scripts {
                if let Err(e) = Glob::new(s) {
                    errors.push(ConfigError::new(
                        locate(None, s),
                        format!("approval rule: bad glob: {e}"),
                        None,
                    ));
                }
            }
            if a.min_approvals == 0 && a.evidence != EvidenceKind::Merge {
                errors.push(ConfigError::new(
                    locate(None, "min_approvals"),
                    "approval rule with min_approvals = 0 needs evidence = \"merge\"",
                    None,
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.removal.max_share) {
            errors.push(ConfigError::new(
                locate(None, "max_share"),
                "removal.max_share must be between 0.0 and 1.0",
                None,
            ));
        }
        for w in &self.waivers {
            if !members.contains(w.by.as_str()) {
                errors.push(ConfigError::new(
                    locate(None, &w.by),
                    format!(
                        "waiver for `{}` is granted by unknown member `{}`",
                        w.rule, w.by
                    ),
                    Some("`by` must be a member id".into()),
                ));
            }
            if !rule_ids.contains(w.rule.as_str()) {
                errors.push(ConfigError::new(
                    locate(None, &w.rule),
                    format!("waiver names unknown rule `{}`", w.rule),
                    Some("use an id from [[rule]] or a built-in check (docs/rules.md)".into()),
                ));
            }
            if w.reason.trim().len() < 10 {
                errors.push(ConfigError::new(
                    locate(None, &w.rule),
                    format!(
                        "waiver for `{}` on `{}` needs a real reason",
                        w.rule, w.script
                    ),
                    Some("say why the finding is acceptable for this script".into()),
                ));
            }
        }
        for g in &self.groups {
            for s in &g.scripts {
                if let Err(e) = Glob::new(s) {
                    errors.push(ConfigError::new(
                        locate(None, s),
                        format!("group `{}`: bad glob: {e}", g.id),
                        None,
                    ));
                }
            }
        }
        for r in &self.rules {
            let home = origin.get(&("rule", r.id.clone())).copied();
            if r.pattern.is_none() && r.commands.is_empty() {
                errors.push(ConfigError::new(
                    locate(home, &r.id),
                    format!("rule `{}` has neither pattern nor commands", r.id),
                    None,
                ));
            }
            for p in r.pattern.iter().chain(r.args_pattern.iter()) {
                if let Err(e) = regex::Regex::new(p) {
                    errors.push(ConfigError::new(
                        locate(home, &r.id),
                        format!("rule `{}`: invalid regex: {e}", r.id),
                        None,
                    ));
                }
            }
        }
    }

    /// The member whose emails include `email` (case-insensitive).
    pub fn member_by_email(&self, email: &str) -> Option<&Member> {
        self.members.iter().find(|m| {
            m.emails
                .iter()
                .any(|e| e.eq_ignore_ascii_case(email.trim()))
        })
    }

    /// The member with this id.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The roles of a member.
    pub fn roles_of<'a>(&'a self, member: &'a Member) -> impl Iterator<Item = &'a Role> + 'a {
        self.roles
            .iter()
            .filter(move |r| member.roles.contains(&r.id))
    }

    /// Device groups a device belongs to.
    pub fn groups_for(&self, platform: Platform, labels: &BTreeMap<String, String>) -> Vec<&Group> {
        self.groups
            .iter()
            .filter(|g| g.matches(platform, labels))
            .collect()
    }

    /// Device group ids that get `script` pre-staged and can run it: groups whose
    /// `scripts` name it and whose platform is unset or one of the script's `platforms`.
    /// Empty means the script reaches no endpoint.
    pub fn staged_groups(&self, script: &str, platforms: &[Platform]) -> Vec<String> {
        self.groups
            .iter()
            .filter(|g| g.scripts.iter().any(|s| glob_match(s, script)))
            .filter(|g| g.platform.is_none_or(|p| platforms.contains(&p)))
            .map(|g| g.id.clone())
            .collect()
    }

    /// Device group ids that get `script` pre-staged.
    pub fn targets_of(&self, script: &str) -> Vec<String> {
        self.groups
            .iter()
            .filter(|g| g.scripts.iter().any(|s| glob_match(s, script)))
            .map(|g| g.id.clone())
            .collect()
    }

    /// Whether `member` may `perm` on `script` (of `risk`) in device group `group`
    /// (`None` when the permission is not about a device, e.g. approve).
    pub fn allows(
        &self,
        member: &Member,
        perm: Permission,
        script: &str,
        risk: Risk,
        group: Option<&str>,
    ) -> bool {
        self.roles_of(member).any(|r| {
            r.permissions.contains(&perm)
                && r.scripts.iter().any(|s| glob_match(s, script))
                && (perm != Permission::Execute || risk <= r.max_risk)
                && group.is_none_or(|g| r.groups.iter().any(|rg| rg == "*" || rg == g))
        })
    }

    /// The approval rules that apply to a change of `script` with `risk`.
    pub fn rules_for_script(&self, script: &str, risk: Risk) -> Vec<&ApprovalRule> {
        self.approvals
            .iter()
            .filter(|a| {
                !a.policy
                    && a.risk.is_none_or(|r| r == risk)
                    && a.scripts.iter().any(|s| glob_match(s, script))
            })
            .collect()
    }

    /// The approval rules that apply to a change of the policy itself.
    pub fn rules_for_policy(&self) -> Vec<&ApprovalRule> {
        self.approvals.iter().filter(|a| a.policy).collect()
    }
}

/// Matches a script-name glob (`*`, `?`, `[...]`); a bad glob matches nothing.
pub fn glob_match(glob: &str, name: &str) -> bool {
    Glob::new(glob)
        .map(|g| g.compile_matcher().is_match(name))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(files: &[(&str, &str)]) -> Result<LoadedPolicy, Vec<ConfigError>> {
        let owned: Vec<(String, String)> = files
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Policy::load(&owned)
    }

    const MEMBERS: &str = r#"
[[member]]
id = "alice"
emails = ["alice@example.org"]
roles = ["ir-lead"]
"#;
    const ROLES: &str = r#"
[[role]]
id = "ir-lead"
permissions = ["author", "approve", "execute"]
groups = ["linux"]

[[group]]
id = "linux"
platform = "linux"
scripts = ["*"]
"#;

    #[test]
    fn merges_files_and_answers_access_questions() {
        let p = load(&[
            ("policies/members.toml", MEMBERS),
            ("policies/roles.toml", ROLES),
        ])
        .expect("valid")
        .policy;
        let alice = p.member_by_email("ALICE@example.org").expect("alice");
        assert!(p.allows(alice, Permission::Execute, "x", Risk::High, Some("linux")));
        assert!(!p.allows(alice, Permission::Execute, "x", Risk::High, Some("windows")));
        assert!(!p.allows(alice, Permission::Audit, "x", Risk::Low, None));
        assert_eq!(p.targets_of("anything"), vec!["linux".to_string()]);
    }

    #[test]
    fn unknown_role_names_file_and_line() {
        let members = MEMBERS.replace("ir-lead", "ir-laed");
        let errs = load(&[
            ("policies/members.toml", &members),
            ("policies/roles.toml", ROLES),
        ])
        .unwrap_err();
        let msg = errs[0].to_string();
        assert!(msg.starts_with("policies/members.toml:5:"), "{msg}");
        assert!(msg.contains("unknown role `ir-laed`"), "{msg}");
    }

    #[test]
    fn unknown_field_and_duplicate_singleton() {
        let errs = load(&[(
            "policies/a.toml",
            "[[member]]\nid = \"x\"\nemail = \"x@y\"\n",
        )])
        .unwrap_err();
        assert!(
            errs[0].to_string().starts_with("policies/a.toml:3:"),
            "{}",
            errs[0]
        );
        assert!(errs[0].to_string().contains("email"), "{}", errs[0]);
        let errs = load(&[
            ("policies/a.toml", "[removal]\nallow = true\n"),
            ("policies/b.toml", "[removal]\n"),
        ])
        .unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .contains("also defined in policies/a.toml"),
            "{}",
            errs[0]
        );
    }
}
