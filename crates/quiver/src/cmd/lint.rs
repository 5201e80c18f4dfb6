//! `quiver lint`: judge a library folder and its policies the way the controller will,
//! before anything is merged.
//!
//! The command is an I/O shell around quiver-core: it reads the policy folder and the
//! library folder into memory (see `read`), lets the core assemble the library and scan
//! it, and prints the outcome for people (`human`), for tools (`json`) or for code
//! scanning services (`sarif`). Exit status: 0 clean or warnings only, 1 deny findings
//! or invalid manifests/policies, 2 usage or I/O errors.

mod checks;
mod human;
mod read;
mod sarif;

use anyhow::{Context, bail};
use quiver_core::policy::{BUILTIN_CHECKS, LoadedPolicy};
use quiver_core::scan::{Finding, Scanner};
use quiver_core::{ConfigError, Library, Policy, Severity};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `quiver lint`.
#[derive(clap::Args)]
pub struct Args {
    /// Library folder.
    #[arg(default_value = "library")]
    pub path: PathBuf,
    /// Policy folder (default: `policies/` beside the library folder).
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Write the report to FILE instead of standard output (the summary line still goes
    /// to standard error, so a CI log shows the outcome).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Do not parse entry files: no syntax check and no command rules (`commands`);
    /// every other check and every regex rule (`pattern`) still run. Much faster
    /// (parsing is most of the work), for a pre-commit hook; the controller always
    /// parses, so run CI without it.
    #[arg(long)]
    pub no_syntax: bool,
}

/// Report formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Findings grouped by script, then a summary line.
    Human,
    /// One JSON object.
    Json,
    /// SARIF 2.1.0, for GitHub code scanning and other SARIF consumers.
    Sarif,
}

/// Rule id for policy files that do not load (a lint-level check, not a scanner one).
pub const POLICY_INVALID: &str = "policy.invalid";
/// Rule id for manifests that do not parse (a built-in scanner check).
pub const MANIFEST_INVALID: &str = "manifest.invalid";
/// Rule id for library files that belong to no script (a lint-level check).
pub const UNCLAIMED: &str = "library.unclaimed";

/// Everything a report shows.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    /// Scripts linted.
    pub scripts: usize,
    /// Regular files read from the library folder.
    pub files: usize,
    /// Their size on disk.
    pub bytes: u64,
    /// Findings, grouped by script (library-wide ones last).
    pub findings: Vec<Finding>,
    /// Counts by effective severity.
    pub summary: Summary,
    /// Whether entry files were parsed (false with `--no-syntax`).
    pub syntax_checked: bool,
    /// Policy errors (nothing is scanned when there are any).
    pub errors: Vec<ConfigError>,
    /// Non-fatal policy problems.
    pub warnings: Vec<ConfigError>,
    /// Script name → folder as shown (for headings).
    #[serde(skip)]
    pub script_dirs: BTreeMap<String, String>,
    /// The library folder as shown in locations.
    #[serde(skip)]
    pub root: String,
    /// The rules that could have produced findings (for SARIF's rule table).
    #[serde(skip)]
    pub rules: Vec<sarif::RuleDoc>,
}

/// Finding counts by effective severity; `waived` counts findings a waiver downgraded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Blocking findings.
    pub deny: usize,
    /// Warnings.
    pub warn: usize,
    /// Informational findings (waived ones included).
    pub info: usize,
    /// Findings downgraded by a waiver.
    pub waived: usize,
    /// Warnings about the policy against this library (a glob that matches nothing, a
    /// script no device group stages, no content rules): not findings, but counted so a
    /// pipeline reading the summary sees them.
    pub policy_warnings: usize,
}

impl Outcome {
    fn summarize(&mut self) {
        let mut s = Summary::default();
        for f in &self.findings {
            match f.severity {
                Severity::Deny => s.deny += 1,
                Severity::Warn => s.warn += 1,
                Severity::Info => s.info += 1,
            }
            if f.waiver.is_some() {
                s.waived += 1;
            }
        }
        s.policy_warnings = self.warnings.len();
        self.summary = s;
    }

    /// Whether the library (or its policy) must not be merged as it stands.
    pub fn fails(&self) -> bool {
        !self.errors.is_empty() || self.findings.iter().any(Finding::blocks)
    }

    /// The one-line summary, e.g.
    /// `linted 14 scripts, 41 files, 312 KiB: 0 deny, 2 warn, 5 info (3 waived)`, with
    /// `; syntax not checked` after it under `--no-syntax`.
    pub fn summary_line(&self) -> String {
        if !self.errors.is_empty() {
            return format!(
                "policy invalid: {} error{}; nothing linted",
                self.errors.len(),
                plural(self.errors.len())
            );
        }
        let s = self.summary;
        format!(
            "linted {} script{}, {} file{}, {}: {} deny, {} warn, {} info ({} waived){}{}",
            self.scripts,
            plural(self.scripts),
            self.files,
            plural(self.files),
            human_size(self.bytes),
            s.deny,
            s.warn,
            s.info,
            s.waived,
            match s.policy_warnings {
                0 => String::new(),
                n => format!("; {n} policy warning{}", plural(n)),
            },
            if self.syntax_checked {
                ""
            } else {
                "; syntax not checked"
            }
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Sizes as people read them: `812 B`, `312 KiB`, `4.2 MiB`, `1.5 GiB`.
pub fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    match bytes {
        b if b < KIB => format!("{b} B"),
        b if b < MIB => format!("{} KiB", b.div_ceil(KIB)),
        b if b < GIB => format!("{:.1} MiB", b as f64 / MIB as f64),
        b => format!("{:.1} GiB", b as f64 / GIB as f64),
    }
}

/// Where the inputs live, for reports that need repository-relative paths (SARIF).
pub struct Paths {
    /// Library folder as shown in findings.
    pub root: String,
    /// Library folder relative to the repository.
    pub root_in_repo: String,
    /// Policy folder as shown in errors.
    pub policies: String,
    /// Policy folder relative to the repository.
    pub policies_in_repo: String,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Stage one: check what was typed, before reading anything.
    let lib_dir = args.path.as_path();
    match std::fs::metadata(lib_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!(
            "{} is not a folder; name the library folder",
            lib_dir.display()
        ),
        Err(e) => bail!(
            "library folder {} not found ({e}); run `quiver lint PATH` with the folder that holds the scripts",
            lib_dir.display()
        ),
    }
    let policies_dir = match &args.policies {
        Some(p) => p.clone(),
        None => default_policies(lib_dir)?,
    };
    match std::fs::metadata(&policies_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("{} is not a folder", policies_dir.display()),
        Err(e) => bail!(
            "policy folder {} not found ({e}); create it or pass --policies DIR",
            policies_dir.display()
        ),
    }
    let paths = Paths {
        root: read::display_path(lib_dir),
        root_in_repo: read::repo_relative(lib_dir).unwrap_or_else(|| read::display_path(lib_dir)),
        policies: read::display_path(&policies_dir),
        policies_in_repo: read::repo_relative(&policies_dir)
            .unwrap_or_else(|| read::display_path(&policies_dir)),
    };

    // Stage two: read, assemble, scan.
    let outcome = lint(lib_dir, &policies_dir, &paths, !args.no_syntax)?;

    // Stage three: report.
    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let text = match args.format {
        Format::Human => human::render(&outcome, to_terminal && colors_wanted()),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&outcome)?;
            s.push('\n');
            s
        }
        Format::Sarif => {
            let mut s = serde_json::to_string_pretty(&sarif::render(&outcome, &paths))?;
            s.push('\n');
            s
        }
    };
    match &args.output {
        Some(file) => {
            std::fs::write(file, text.as_bytes())
                .with_context(|| format!("cannot write {}", file.display()))?;
            eprintln!("{}", outcome.summary_line());
        }
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`quiver lint | head`) is not an error worth a message.
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush())
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                return Err(e).context("cannot write the report");
            }
        }
    }
    Ok(if outcome.fails() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `policies/` beside the library folder (`example-library` → `policies`).
fn default_policies(lib_dir: &Path) -> anyhow::Result<PathBuf> {
    if lib_dir.file_name().is_some() {
        let parent = lib_dir.parent().unwrap_or(Path::new(""));
        return Ok(parent.join("policies"));
    }
    // `.` or `..`: only the resolved path has a parent worth naming.
    let abs = lib_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", lib_dir.display()))?;
    Ok(abs.parent().unwrap_or(&abs).join("policies"))
}

fn colors_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Reads both folders, loads the policy, assembles and scans the library (parsing entry
/// files when `syntax` is set).
fn lint(
    lib_dir: &Path,
    policies_dir: &Path,
    paths: &Paths,
    syntax: bool,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome {
        root: paths.root.clone(),
        syntax_checked: syntax,
        rules: vec![sarif::RuleDoc {
            id: POLICY_INVALID.to_string(),
            short: "a policy file that does not parse or validate".to_string(),
            help: "fix the file:line the message names; docs/policy.md lists every field"
                .to_string(),
            severity: Some(Severity::Deny),
        }],
        ..Default::default()
    };
    outcome.rules.push(sarif::RuleDoc {
        id: UNCLAIMED.to_string(),
        short: "a library file that belongs to no script and is never delivered".to_string(),
        help: "add a script.toml to its folder or a [[discovery]] rule that claims it, or move it out of the library".to_string(),
        severity: None,
    });
    let read::PolicyFiles { files, mut errors } =
        read::read_policies(policies_dir, &paths.policies)?;
    if files.is_empty() && errors.is_empty() {
        outcome.warnings.push(ConfigError::new(
            quiver_core::Location::file(paths.policies.clone()),
            "no *.toml policy files; linting with built-in defaults only (no content rules)",
            Some("add the policy files that govern this library".into()),
        ));
    }
    // Load what could be read even when a file could not, so every error shows at once.
    let LoadedPolicy { policy, warnings } = match Policy::load(&files) {
        Ok(loaded) if errors.is_empty() => loaded,
        Ok(_) => {
            outcome.errors = errors;
            return Ok(outcome);
        }
        Err(errs) => {
            errors.extend(errs);
            outcome.errors = errors;
            return Ok(outcome);
        }
    };
    outcome.warnings.extend(warnings);
    if !files.is_empty() && policy.rules.is_empty() {
        // Without content rules the scan still checks paths, encodings, syntax and
        // signatures, but nothing looks for download-and-execute, secrets or disabled
        // defences: easy to miss when a new library forgets to copy the rules file.
        outcome.warnings.push(ConfigError::new(
            quiver_core::Location::file(paths.policies.clone()),
            "the policies define no content rules ([[rule]]): nothing is searched for download-and-execute, encoded commands, disabled defences, destructive commands, secrets or persistence",
            Some("copy the default rules, policies/rules.toml of the quiver project, into this folder".into()),
        ));
    }
    outcome
        .rules
        .extend(policy.rules.iter().map(|r| sarif::RuleDoc {
            id: r.id.clone(),
            short: r.message.clone(),
            help: r.help.clone(),
            severity: Some(r.severity),
        }));
    outcome
        .rules
        .extend(BUILTIN_CHECKS.iter().map(|(id, what)| sarif::RuleDoc {
            id: (*id).to_string(),
            short: what.to_string(),
            help: String::new(),
            severity: None,
        }));
    let scanner = match Scanner::new(&policy) {
        Ok(s) => s.with_syntax(syntax),
        Err(errs) => {
            outcome.errors = errs;
            return Ok(outcome);
        }
    };

    // Read a little past the limit so the scanner still sees an oversized file as
    // oversized, without loading a 10 GB file into memory.
    let cap = policy.limits.max_file_size.saturating_add(1);
    let read = read::read_tree(lib_dir, cap)?;
    let lib = Library::assemble(&paths.root, &read.tree, &policy);
    let report = scanner.scan_library(&lib);

    // A script no device group stages reaches no endpoint: legal, but rarely meant
    // (a Windows script in a library whose policy only has a linux group). Only said
    // when the policy has groups at all.
    if !policy.groups.is_empty() {
        for s in &lib.scripts {
            if policy
                .staged_groups(&s.name, &s.manifest.platforms)
                .is_empty()
            {
                let platforms: Vec<String> = s
                    .manifest
                    .platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                outcome.warnings.push(ConfigError::new(
                    quiver_core::Location::file(read::join_display(&paths.root, &s.dir)),
                    format!(
                        "script `{}` ({}) is staged on no device group, so it reaches no endpoint",
                        s.name,
                        platforms.join(", ")
                    ),
                    Some(format!(
                        "add it to the `scripts` of a [[group]] whose platform is {} (or unset)",
                        platforms.join(" or ")
                    )),
                ));
            }
        }
    }
    outcome.scripts = report.scripts;
    outcome.files = read.files;
    outcome.bytes = read.bytes;
    outcome.findings = report.findings;
    outcome.script_dirs = lib
        .scripts
        .iter()
        .map(|s| (s.name.clone(), read::join_display(&paths.root, &s.dir)))
        .collect();
    outcome
        .warnings
        .extend(checks::unmatched_globs(&policy, &lib, &read.tree, &files));
    checks::add_broken_manifests(&mut outcome.findings, &lib);
    checks::add_unclaimed(&mut outcome.findings, &lib);
    checks::state_real_sizes(&mut outcome.findings, &read.truncated, &paths.root, cap - 1);
    // Group by script, library-wide findings last; keep the scanner's order within.
    outcome
        .findings
        .sort_by(|a, b| (a.script.is_none(), &a.script).cmp(&(b.script.is_none(), &b.script)));
    outcome.summarize();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_size(812), "812 B");
        assert_eq!(human_size(312 * 1024), "312 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 + 1024 * 200), "5.2 MiB");
    }

    #[test]
    fn policies_default_to_the_folder_beside_the_library() {
        assert_eq!(
            default_policies(Path::new("example-library")).unwrap(),
            PathBuf::from("policies")
        );
        assert_eq!(
            default_policies(Path::new("repo/library/")).unwrap(),
            PathBuf::from("repo/policies")
        );
    }
}
