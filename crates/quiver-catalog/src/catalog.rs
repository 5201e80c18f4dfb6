//! The catalog: every deployable script version, its files, platforms, targets and parameters.
//!
//! The controller derives it from the approved state and signs it; every replica must publish
//! the same bytes, so [`Catalog::to_canonical_bytes`] normalises order and uses compact JSON
//! with no floats. The agent trusts nothing in it until [`Catalog::parse`] has checked the
//! shape (`deny_unknown_fields`, validated newtypes) and the cross-references
//! ([`Catalog::validate`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::path::{RelPath, ScriptName, Sha256Hex};
use crate::verify::Limits;

/// Why catalog (or timestamp) bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The document is bigger than the limit; nothing was parsed.
    #[error("document is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Size of the document.
        size: u64,
        /// The limit it broke.
        limit: u64,
    },
    /// Not valid JSON, an unknown field, or a value that fails its type's validation.
    #[error("malformed document: {0}")]
    Json(#[from] serde_json::Error),
    /// The `type` field names another kind of document.
    #[error("document type is {found:?}, expected {expected:?}")]
    WrongType {
        /// What the document says it is.
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The `format` is one this build does not understand; upgrade the agent.
    #[error("document format {0} is not supported (this build reads format 1); upgrade")]
    UnsupportedFormat(u32),
    /// Any other inconsistency, with what and where.
    #[error("invalid catalog: {0}")]
    Invalid(String),
}

/// The signed list of everything an endpoint may cache and run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Always `"catalog"`, so a signed timestamp can never be passed off as a catalog.
    pub r#type: String,
    /// Always 1 for this layout.
    pub format: u32,
    /// Grows with every published change; endpoints refuse a lower one (rollback).
    pub serial: u64,
    /// Library commit the catalog was built from.
    pub source_commit: String,
    /// Policy commit the approvals were evaluated under.
    pub policy_commit: String,
    /// Target groups that entries refer to by id.
    pub groups: Vec<Group>,
    /// One entry per deployable script (its approved version).
    pub entries: Vec<Entry>,
}

/// A set of devices, selected by platform and labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Name entries use to refer to the group.
    pub id: String,
    /// Only devices of this platform, or any platform when `None`.
    pub platform: Option<Platform>,
    /// Every `k=v` here must be among the device's labels.
    pub labels: BTreeMap<String, String>,
}

/// An endpoint operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Microsoft Windows.
    Windows,
    /// Apple macOS.
    Macos,
    /// Linux.
    Linux,
}

/// How sure an approver must be before a script ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Routine scripts.
    Low,
    /// Scripts that need stricter approval.
    High,
}

/// The interpreter that launches a script file; arguments are passed as separate argv items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpreter {
    /// Windows PowerShell 5.1 (`powershell.exe`).
    Powershell,
    /// PowerShell 7+ (`pwsh`).
    Pwsh,
    /// `bash`.
    Bash,
    /// POSIX `sh`.
    Sh,
    /// `zsh`.
    Zsh,
    /// `python3`.
    Python3,
    /// The file itself is executed.
    Executable,
}

/// The type a parameter value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Any text without NUL.
    String,
    /// A decimal `i64`.
    Int,
    /// `true` or `false`.
    Bool,
    /// One of the parameter's `values`.
    Enum,
    /// A non-empty path on the endpoint (not checked against its disk).
    Path,
}

/// One deployable script version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Script name, also its cache folder.
    pub script: ScriptName,
    /// Approved version number.
    pub version: u32,
    /// Library commit the files come from.
    pub commit: String,
    /// One-line description for operators.
    pub description: String,
    /// Risk class.
    pub risk: Risk,
    /// How to launch the script on each supported platform.
    pub platforms: BTreeMap<Platform, Launch>,
    /// Ids of the groups the script is deployed to.
    pub groups: Vec<String>,
    /// Declared parameters, in the order they are passed.
    pub parameters: Vec<Parameter>,
    /// Wall-clock limit for one run.
    pub timeout_secs: u64,
    /// Captured output limit in bytes.
    pub output_limit: u64,
    /// Every file of the script folder.
    pub files: Vec<FileEntry>,
}

/// Which file to start and with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// One of the entry's files.
    pub file: RelPath,
    /// The interpreter to run it with.
    pub interpreter: Interpreter,
}

/// A declared script parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    /// `[A-Za-z][A-Za-z0-9_]{0,63}`.
    pub name: String,
    /// Value type.
    pub r#type: ParamType,
    /// A run must give a value (unless there is a default).
    pub required: bool,
    /// Value used when the run gives none.
    pub default: Option<String>,
    /// Allowed values of an `enum` parameter.
    pub values: Vec<String>,
    /// Help text.
    pub description: String,
}

/// One file of a script folder, stored as a blob named by its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path inside the script folder.
    pub path: RelPath,
    /// Digest of the content.
    pub sha256: Sha256Hex,
    /// Size of the content in bytes.
    pub size: u64,
    /// `0o644` or `0o755`.
    pub mode: u32,
}

/// Why the parameters of a run request were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// The script declares no parameter of that name.
    #[error("unknown parameter {0:?}")]
    Unknown(String),
    /// A required parameter has no value and no default.
    #[error("missing required parameter {0:?}")]
    Missing(String),
    /// The value does not fit the parameter's type.
    #[error("parameter {name:?}: {reason}")]
    Invalid {
        /// Parameter name.
        name: String,
        /// What is wrong with the value.
        reason: String,
    },
}

impl Catalog {
    /// The `type` of every catalog.
    pub const TYPE: &'static str = "catalog";
    /// The only format this build reads and writes.
    pub const FORMAT: u32 = 1;

    /// A catalog with the right `type` and `format`.
    pub fn new(
        serial: u64,
        source_commit: String,
        policy_commit: String,
        groups: Vec<Group>,
        entries: Vec<Entry>,
    ) -> Catalog {
        Catalog {
            r#type: Self::TYPE.into(),
            format: Self::FORMAT,
            serial,
            source_commit,
            policy_commit,
            groups,
            entries,
        }
    }

    /// The bytes to sign and publish: the same value always gives the same bytes, whatever the
    /// order entries, groups and files were added in. Parameters keep their declared order
    /// (it is the argument order).
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        let mut c = self.clone();
        c.normalize();
        canonical_json(&c)
    }

    /// Puts the catalog in canonical order: groups by id, entries by script, each entry's
    /// groups sorted and deduplicated, files by path. Parameters are left as declared.
    pub fn normalize(&mut self) {
        self.groups.sort_by(|a, b| a.id.cmp(&b.id));
        self.entries.sort_by(|a, b| a.script.cmp(&b.script));
        for e in &mut self.entries {
            e.groups.sort();
            e.groups.dedup();
            e.files.sort_by(|a, b| a.path.cmp(&b.path));
        }
    }

    /// Parses and validates untrusted catalog bytes (after the signature has been checked).
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Catalog, CatalogError> {
        let catalog: Catalog = parse_document(bytes, limits.max_catalog_bytes)?;
        check_header(&catalog.r#type, Self::TYPE, catalog.format)?;
        catalog.validate(limits)?;
        Ok(catalog)
    }

    /// Checks the cross-references serde cannot: unique names and paths, launch files that
    /// exist, well-formed parameters, known groups, and the file count and size limits.
    pub fn validate(&self, limits: &Limits) -> Result<(), CatalogError> {
        let invalid = |msg: String| Err(CatalogError::Invalid(msg));
        let mut group_ids = BTreeSet::new();
        for g in &self.groups {
            if !group_ids.insert(g.id.as_str()) {
                return invalid(format!("group {:?} is defined twice", g.id));
            }
        }
        let mut scripts = BTreeSet::new();
        let (mut count, mut total) = (0u64, 0u64);
        for e in &self.entries {
            let s = &e.script;
            if !scripts.insert(s) {
                return invalid(format!("script {s} appears twice"));
            }
            // Windows and macOS caches are case-insensitive: `A.ps1` and `a.ps1` would collide.
            let mut paths = BTreeSet::new();
            for f in &e.files {
                if !paths.insert(f.path.as_str().to_lowercase()) {
                    return invalid(format!(
                        "{s}: file {} appears twice (ignoring case)",
                        f.path
                    ));
                }
                if f.mode != 0o644 && f.mode != 0o755 {
                    return invalid(format!("{s}: file {} has mode {:o}", f.path, f.mode));
                }
                if f.size > limits.max_blob_bytes {
                    return invalid(format!("{s}: file {} is {} bytes", f.path, f.size));
                }
                count += 1;
                total = total.saturating_add(f.size);
            }
            for (platform, launch) in &e.platforms {
                if !e.files.iter().any(|f| f.path == launch.file) {
                    return invalid(format!(
                        "{s}: launch file {} for {platform} is not among its files",
                        launch.file
                    ));
                }
            }
            let mut names = BTreeSet::new();
            for p in &e.parameters {
                if !is_param_name(&p.name) {
                    return invalid(format!("{s}: bad parameter name {:?}", p.name));
                }
                if !names.insert(p.name.as_str()) {
                    return invalid(format!("{s}: parameter {} declared twice", p.name));
                }
                if p.r#type == ParamType::Enum && p.values.is_empty() {
                    return invalid(format!("{s}: enum parameter {} has no values", p.name));
                }
                if let Some(Err(reason)) = p.default.as_deref().map(|d| p.check_value(d)) {
                    return invalid(format!("{s}: default of {}: {reason}", p.name));
                }
            }
            if let Some(g) = e.groups.iter().find(|g| !group_ids.contains(g.as_str())) {
                return invalid(format!("{s}: unknown group {g:?}"));
            }
        }
        if count > limits.max_files {
            return invalid(format!(
                "{count} files, over the limit of {}",
                limits.max_files
            ));
        }
        if total > limits.max_total_bytes {
            return invalid(format!(
                "{total} bytes of files, over {}",
                limits.max_total_bytes
            ));
        }
        Ok(())
    }

    /// The entries a device should cache: a launch for its platform, and at least one of the
    /// entry's groups matches the device.
    pub fn for_device(&self, platform: Platform, labels: &BTreeMap<String, String>) -> Vec<&Entry> {
        let member: BTreeSet<&str> = self
            .groups
            .iter()
            .filter(|g| g.matches(platform, labels))
            .map(|g| g.id.as_str())
            .collect();
        self.entries
            .iter()
            .filter(|e| e.platforms.contains_key(&platform))
            .filter(|e| e.groups.iter().any(|g| member.contains(g.as_str())))
            .collect()
    }

    /// The entry for `script`, if any.
    pub fn entry(&self, script: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.script.as_str() == script)
    }
}

impl Group {
    /// Whether a device with this platform and labels is in the group.
    pub fn matches(&self, platform: Platform, labels: &BTreeMap<String, String>) -> bool {
        self.platform.is_none_or(|p| p == platform)
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

impl Entry {
    /// Type-checks the values of a run request and fills in defaults, returning name/value
    /// pairs in declared order. Values are never interpreted by a shell: the agent passes each
    /// as its own argument, so this is type checking, not escaping.
    pub fn check_params(
        &self,
        given: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, String)>, ParamError> {
        if let Some(name) = given
            .keys()
            .find(|k| !self.parameters.iter().any(|p| &p.name == *k))
        {
            return Err(ParamError::Unknown(name.clone()));
        }
        let mut out = Vec::with_capacity(self.parameters.len());
        for p in &self.parameters {
            let value = match (given.get(&p.name), &p.default) {
                (Some(v), _) => v,
                (None, Some(d)) => d,
                (None, None) if p.required => return Err(ParamError::Missing(p.name.clone())),
                (None, None) => continue,
            };
            p.check_value(value).map_err(|reason| ParamError::Invalid {
                name: p.name.clone(),
                reason,
            })?;
            out.push((p.name.clone(), value.clone()));
        }
        Ok(out)
    }
}

impl Parameter {
    /// Checks one value against the parameter's type; the error says what is wrong.
    pub fn check_value(&self, value: &str) -> Result<(), String> {
        if value.contains('\0') {
            return Err("value contains NUL".into());
        }
        match self.r#type {
            ParamType::String => Ok(()),
            ParamType::Path if value.is_empty() => Err("path is empty".into()),
            ParamType::Path => Ok(()),
            ParamType::Int => value
                .parse::<i64>()
                .map(drop)
                .map_err(|_| format!("{value:?} is not a decimal integer")),
            ParamType::Bool if value == "true" || value == "false" => Ok(()),
            ParamType::Bool => Err(format!("{value:?} is not true or false")),
            ParamType::Enum if self.values.iter().any(|v| v == value) => Ok(()),
            ParamType::Enum => Err(format!("{value:?} is not one of {:?}", self.values)),
        }
    }
}

fn is_param_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Compact JSON plus a trailing newline: the published form of every signed document.
pub(crate) fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Only strings, integers, bools, maps with string keys and validated times: cannot fail.
    let mut bytes = serde_json::to_vec(value).expect("signed documents always serialize");
    bytes.push(b'\n');
    bytes
}

/// Size cap before a single byte is parsed, then strict JSON.
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    limit: u64,
) -> Result<T, CatalogError> {
    if bytes.len() as u64 > limit {
        return Err(CatalogError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(serde_json::from_slice(bytes)?)
}

pub(crate) fn check_header(
    found: &str,
    expected: &'static str,
    format: u32,
) -> Result<(), CatalogError> {
    if found != expected {
        return Err(CatalogError::WrongType {
            found: found.into(),
            expected,
        });
    }
    if format != 1 {
        return Err(CatalogError::UnsupportedFormat(format));
    }
    Ok(())
}

macro_rules! lowercase_display {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // The serde name is the one spelling used in files, logs and the CLI.
                let v = serde_json::to_value(self).map_err(|_| fmt::Error)?;
                f.write_str(v.as_str().unwrap_or_default())
            }
        }
    )*};
}
lowercase_display!(Platform, Risk, Interpreter, ParamType);

impl Platform {
    /// The platform this binary was built for, if quiver supports it.
    pub fn current() -> Option<Platform> {
        match std::env::consts::OS {
            "windows" => Some(Platform::Windows),
            "macos" => Some(Platform::Macos),
            "linux" => Some(Platform::Linux),
            _ => None,
        }
    }
}
