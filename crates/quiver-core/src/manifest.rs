//! Script manifests (`script.toml`): what a script is, where it runs, what it takes.
//!
//! A manifest is parsed strictly (unknown fields are errors) because a misspelt
//! `timeout` silently falling back to a default is exactly the kind of surprise that
//! hurts in the middle of an incident.

use crate::diag::{ConfigError, Location, find_value_location};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Default run timeout when a manifest names none (policy may cap it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Default cap on captured output when a manifest names none.
pub const DEFAULT_OUTPUT_LIMIT: u64 = 10 * 1024 * 1024;

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

impl Platform {
    /// All platforms, in a stable order.
    pub const ALL: [Platform; 3] = [Platform::Windows, Platform::Macos, Platform::Linux];

    /// The lowercase name used in TOML and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Windows => "windows",
            Platform::Macos => "macos",
            Platform::Linux => "linux",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an entry file is started on the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpreter {
    /// Windows PowerShell 5.1 (`powershell.exe`).
    Powershell,
    /// PowerShell 7+ (`pwsh`).
    Pwsh,
    /// GNU bash.
    Bash,
    /// POSIX sh.
    Sh,
    /// zsh (the macOS default shell).
    Zsh,
    /// Python 3.
    Python3,
    /// A native executable, run directly; must carry a publisher signature.
    Executable,
}

impl Interpreter {
    /// The lowercase name used in TOML and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Interpreter::Powershell => "powershell",
            Interpreter::Pwsh => "pwsh",
            Interpreter::Bash => "bash",
            Interpreter::Sh => "sh",
            Interpreter::Zsh => "zsh",
            Interpreter::Python3 => "python3",
            Interpreter::Executable => "executable",
        }
    }

    /// The scanner language of files run by this interpreter.
    pub fn language(self) -> Language {
        match self {
            Interpreter::Powershell | Interpreter::Pwsh => Language::Powershell,
            Interpreter::Bash | Interpreter::Sh | Interpreter::Zsh => Language::Shell,
            Interpreter::Python3 => Language::Python,
            Interpreter::Executable => Language::Binary,
        }
    }
}

impl fmt::Display for Interpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The language family a content rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// `.ps1`, `.psm1`, `.psd1`.
    Powershell,
    /// bash, sh, zsh.
    Shell,
    /// Python.
    Python,
    /// Any other text file (data, config).
    Text,
    /// Executables and other binary files.
    Binary,
}

impl Language {
    /// Guesses the language of a file that is not an entry, from its extension.
    pub fn from_path(path: &str) -> Language {
        let lower = path.to_ascii_lowercase();
        let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        match ext {
            "ps1" | "psm1" | "psd1" => Language::Powershell,
            "sh" | "bash" | "zsh" => Language::Shell,
            "py" => Language::Python,
            "exe" | "dll" | "bin" | "so" | "dylib" => Language::Binary,
            _ => Language::Text,
        }
    }
}

/// Risk level; policy can ask more approvals for `high`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Read-only collection with no sensitive output.
    #[default]
    Low,
    /// Touches sensitive data or changes the endpoint; usually needs more approvals.
    High,
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Risk::Low => "low",
            Risk::High => "high",
        })
    }
}

/// The type of a script parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Free text.
    String,
    /// A decimal 64-bit signed integer.
    Int,
    /// `true` or `false`.
    Bool,
    /// One of `values`.
    Enum,
    /// A path on the endpoint.
    Path,
}

/// A typed script parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    /// `[A-Za-z][A-Za-z0-9_]*`, at most 64 characters.
    pub name: String,
    /// The value's type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Whether a run must give it.
    #[serde(default)]
    pub required: bool,
    /// Default value, written as a string and checked against the type.
    #[serde(default)]
    pub default: Option<String>,
    /// Allowed values for `enum`.
    #[serde(default)]
    pub values: Vec<String>,
    /// What it means, shown to analysts.
    #[serde(default)]
    pub description: String,
}

impl Parameter {
    /// Checks a value against this parameter's type; `Err` says why not.
    pub fn check_value(&self, value: &str) -> Result<(), String> {
        if value.contains('\0') {
            return Err("contains a NUL byte".into());
        }
        match self.kind {
            ParamType::String => Ok(()),
            ParamType::Int => value
                .parse::<i64>()
                .map(|_| ())
                .map_err(|_| format!("`{value}` is not an integer")),
            ParamType::Bool => match value {
                "true" | "false" => Ok(()),
                _ => Err(format!("`{value}` is not `true` or `false`")),
            },
            ParamType::Enum => {
                if self.values.iter().any(|v| v == value) {
                    Ok(())
                } else {
                    Err(format!("`{value}` is not one of {:?}", self.values))
                }
            }
            ParamType::Path => {
                if value.is_empty() {
                    Err("a path must not be empty".into())
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Where a platform's entry point is and how to start it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// Entry file, relative to the script's folder.
    pub file: String,
    /// How to start it.
    pub interpreter: Interpreter,
}

/// The raw TOML shape of `script.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    #[serde(default)]
    description: String,
    platforms: Vec<Platform>,
    #[serde(default)]
    risk: Risk,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    output_limit: Option<SizeValue>,
    entry: BTreeMap<Platform, Launch>,
    #[serde(default, rename = "parameter")]
    parameters: Vec<Parameter>,
}

/// A size written as an integer of bytes or a string with a unit (`"16 MiB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    pub(crate) fn to_bytes(&self) -> Result<u64, String> {
        match self {
            SizeValue::Bytes(n) => Ok(*n),
            SizeValue::Text(s) => {
                s.parse::<bytesize::ByteSize>()
                    .map(|b| b.as_u64())
                    .map_err(|e| {
                        format!(
                            "`{s}` is not a size ({e}); write e.g. \"16 MiB\" or a number of bytes"
                        )
                    })
            }
        }
    }
}

/// Parses a duration such as `"90s"`, `"10m"`, `"1h 30m"`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write e.g. \"90s\", \"10m\" or \"1h\"")
    })
}

/// A validated script manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// Script name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// What the script does and what it outputs.
    pub description: String,
    /// Platforms it runs on (the keys of `entries`).
    pub platforms: Vec<Platform>,
    /// Risk level.
    pub risk: Risk,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Run timeout.
    #[serde(with = "duration_secs")]
    pub timeout: Duration,
    /// Cap on captured output, in bytes.
    pub output_limit: u64,
    /// Entry point per platform.
    pub entries: BTreeMap<Platform, Launch>,
    /// Typed parameters, in declared order.
    pub parameters: Vec<Parameter>,
}

mod duration_secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// Checks a script name: 1–128 of letters, digits, `-`, `_`, `.`, not starting with `.`.
pub fn check_script_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("a script name must be 1 to 128 characters".into());
    }
    if name.starts_with('.') {
        return Err("a script name must not start with `.`".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "`{c}` is not allowed in a script name (letters, digits, `-`, `_`, `.`)"
        ));
    }
    Ok(())
}

/// Checks a parameter name: `[A-Za-z][A-Za-z0-9_]*`, at most 64 characters.
pub fn check_param_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok_first = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !ok_first || name.len() > 64 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "parameter name `{name}` must start with a letter and hold only letters, digits and `_` (at most 64)"
        ));
    }
    Ok(())
}

impl Manifest {
    /// Parses and validates `script.toml` text; `file` is its path for messages.
    pub fn parse(file: &str, text: &str) -> Result<Manifest, Vec<ConfigError>> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| vec![ConfigError::from_toml(file, text, &e)])?;
        let mut errors = Vec::new();
        let at = |needle: &str| find_value_location(file, text, needle);
        if let Err(msg) = check_script_name(&raw.name) {
            errors.push(ConfigError::new(
                at(&raw.name),
                format!("name: {msg}"),
                None,
            ));
        }
        let timeout = match raw.timeout.as_deref().map(parse_duration) {
            None => DEFAULT_TIMEOUT,
            Some(Ok(d)) if d.is_zero() => {
                errors.push(ConfigError::new(
                    at(raw.timeout.as_deref().unwrap_or_default()),
                    "timeout: must be more than zero",
                    None,
                ));
                DEFAULT_TIMEOUT
            }
            Some(Ok(d)) => d,
            Some(Err(msg)) => {
                errors.push(ConfigError::new(
                    at(raw.timeout.as_deref().unwrap_or_default()),
                    format!("timeout: {msg}"),
                    None,
                ));
                DEFAULT_TIMEOUT
            }
        };
        let output_limit = match raw.output_limit.as_ref().map(SizeValue::to_bytes) {
            None => DEFAULT_OUTPUT_LIMIT,
            Some(Ok(n)) => n,
            Some(Err(msg)) => {
                errors.push(ConfigError::new(
                    Location::file(file),
                    format!("output_limit: {msg}"),
                    None,
                ));
                DEFAULT_OUTPUT_LIMIT
            }
        };
        let mut platforms = raw.platforms.clone();
        platforms.sort();
        platforms.dedup();
        let declared: Vec<Platform> = raw.entry.keys().copied().collect();
        if platforms != declared {
            errors.push(ConfigError::new(
                at("platforms")
                    .line
                    .map(|_| at("platforms"))
                    .unwrap_or_else(|| Location::file(file)),
                format!(
                    "platforms {:?} do not match the [entry.*] tables {:?}",
                    platforms.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                    declared.iter().map(|p| p.as_str()).collect::<Vec<_>>()
                ),
                Some("declare one [entry.<platform>] table for each platform listed".into()),
            ));
        }
        if declared.is_empty() {
            errors.push(ConfigError::new(
                Location::file(file),
                "no [entry.<platform>] table",
                Some("add e.g. [entry.linux] with file and interpreter".into()),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &raw.parameters {
            let loc = at(&p.name);
            if let Err(msg) = check_param_name(&p.name) {
                errors.push(ConfigError::new(loc.clone(), msg, None));
            }
            if !seen.insert(p.name.to_ascii_lowercase()) {
                errors.push(ConfigError::new(
                    loc.clone(),
                    format!("parameter `{}` declared twice", p.name),
                    None,
                ));
            }
            if p.kind == ParamType::Enum && p.values.is_empty() {
                errors.push(ConfigError::new(
                    loc.clone(),
                    format!("enum parameter `{}` has no values", p.name),
                    Some("add values = [\"a\", \"b\"]".into()),
                ));
            }
            if p.kind != ParamType::Enum && !p.values.is_empty() {
                errors.push(ConfigError::new(
                    loc.clone(),
                    format!(
                        "parameter `{}`: values are only allowed for type enum",
                        p.name
                    ),
                    None,
                ));
            }
            if let Some(d) = &p.default
                && let Err(msg) = p.check_value(d)
            {
                errors.push(ConfigError::new(
                    loc.clone(),
                    format!("parameter `{}` default: {msg}", p.name),
                    None,
                ));
            }
            if p.required && p.default.is_some() {
                errors.push(ConfigError::new(
                    loc,
                    format!("parameter `{}` is required and has a default", p.name),
                    Some("drop `required` or the default".into()),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Manifest {
            name: raw.name,
            description: raw.description,
            platforms,
            risk: raw.risk,
            tags: raw.tags,
            timeout,
            output_limit,
            entries: raw.entry,
            parameters: raw.parameters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "process-list"
description = "ps"
platforms = ["linux"]
timeout = "5m"
output_limit = "16 MiB"

[entry.linux]
file = "ps.sh"
interpreter = "bash"

[[parameter]]
name = "hash"
type = "bool"
default = "true"
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::parse("s/script.toml", GOOD).expect("valid");
        assert_eq!(m.timeout, Duration::from_secs(300));
        assert_eq!(m.output_limit, 16 * 1024 * 1024);
        assert_eq!(m.entries[&Platform::Linux].interpreter, Interpreter::Bash);
    }

    #[test]
    fn misspelt_field_names_field_and_line() {
        let text = GOOD.replace("timeout =", "timout =");
        let errs = Manifest::parse("s/script.toml", &text).unwrap_err();
        let msg = errs[0].to_string();
        assert!(msg.contains("timout"), "{msg}");
        assert!(msg.starts_with("s/script.toml:5:"), "{msg}");
    }

    #[test]
    fn platform_mismatch_and_bad_default() {
        let text = GOOD
            .replace("[\"linux\"]", "[\"linux\", \"windows\"]")
            .replace("\"true\"", "\"yes\"");
        let errs = Manifest::parse("s/script.toml", &text).unwrap_err();
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(all.iter().any(|m| m.contains("do not match")), "{all:?}");
        assert!(
            all.iter()
                .any(|m| m.contains("`yes` is not `true` or `false`")),
            "{all:?}"
        );
    }
}
