//! The scanner: findings on the exact bytes that will be delivered.
//!
//! Code map:
//! - `mod.rs` (here): the order of the checks, waivers, and the report.
//! - `paths`: limits, names, links and the manifest's entries (no file content needed).
//! - `encoding`: decoding for scanning, and the encoding traps that break a script.
//! - `rules`: the policy's content rules, compiled once (one automaton per language).
//! - `syntax`: tree-sitter parses of entry files: parse errors and the commands run.
//! - `signature`: executables must carry a minisign signature by a pinned publisher.
//!
//! Invariants:
//! - Every file is read once: decoded once (borrowed for UTF-8), searched by one
//!   automaton for all regex rules, and, if it is an entry, parsed once.
//! - A finding names one file and one rule; a rule that matches many times in a file is
//!   one finding at its first match, with the count in the message.
//! - Nothing is cached between calls except parse outcomes keyed by the SHA-256 of the
//!   text, so a scan depends only on the policy and the bytes, and a rescan of a library
//!   parses only the entries that changed.
//! - Findings come out sorted by script, file, line and rule, whatever the thread count.

pub mod encoding;
mod paths;
mod rules;
mod signature;
mod syntax;

use crate::diag::{ConfigError, Location, Severity, line_col};
use crate::library::{Library, Script};
use crate::manifest::{Interpreter, Language};
use crate::policy::{Limits, Policy, Waiver};
use crate::tree::TreeEntry;
use globset::{Glob, GlobMatcher};
use rules::{CompiledRules, Hit};
use serde::Serialize;
use sha2::{Digest, Sha256};
use signature::{PinnedKey, Verdict};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

pub use rules::{COMPUTED as COMPUTED_COMMAND, ESCAPED as ESCAPED_COMMAND};

/// Entry files larger than this are not parsed (parsing runs at a few MB/s); the scanner
/// reports that as `syntax.skipped` (info) and still applies the regex rules.
pub const MAX_PARSE_SIZE: usize = 4 * 1024 * 1024;

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
    /// Rule or built-in check id (e.g. `download-exec.powershell`, `path.symlink`).
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

    fn sort_key(&self) -> impl Ord + '_ {
        (
            &self.script,
            &self.location.file,
            self.location.line,
            &self.rule,
            self.location.column,
            &self.message,
        )
    }
}

/// Sorts findings by script, file, line and rule (the report's order).
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
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

impl ScanReport {
    /// Whether any finding blocks.
    pub fn blocks(&self) -> bool {
        self.findings.iter().any(Finding::blocks)
    }

    /// The findings of one script.
    pub fn for_script<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings
            .iter()
            .filter(move |f| f.script.as_deref() == Some(name))
    }
}

/// What parsing one entry text yields, independent of which script holds it.
struct ParseOutcome {
    error: Option<syntax::SyntaxError>,
    error_count: usize,
    hits: Vec<Hit>,
}

/// Parse outcomes kept by content; the cache is emptied when it reaches this size.
const PARSE_CACHE_ENTRIES: usize = 50_000;

struct CompiledWaiver {
    script: GlobMatcher,
    file: Option<GlobMatcher>,
    waiver: Waiver,
}

/// A scanner compiled from a policy (content rules compiled once).
///
/// It is `Send + Sync`: one scanner can serve many threads.
pub struct Scanner {
    limits: Limits,
    parses: Mutex<HashMap<[u8; 32], Arc<ParseOutcome>>>,
    allowed_extensions: Option<Vec<String>>,
    keys: Vec<PinnedKey>,
    rules: CompiledRules,
    waivers: Vec<CompiledWaiver>,
    threads: usize,
    syntax: bool,
}

/// Collects the findings of one script with paths relative to its folder.
pub(crate) struct Sink<'a> {
    /// `root/dir/`, the prefix of every location.
    base: String,
    script: &'a str,
    items: Vec<(String, Finding)>,
}

impl<'a> Sink<'a> {
    fn new(root: &str, script: &'a Script) -> Self {
        let mut base = String::new();
        for part in [root, script.dir.as_str()] {
            let part = part.trim_matches('/');
            if !part.is_empty() && part != "." {
                base.push_str(part);
                base.push('/');
            }
        }
        Sink {
            base,
            script: &script.name,
            items: Vec::new(),
        }
    }

    fn location(&self, rel: &str, at: Option<(u32, u32)>) -> Location {
        let file = format!("{}{rel}", self.base);
        match at {
            Some((line, column)) => Location::at(file, line, column),
            None => Location::file(file),
        }
    }

    /// A finding at a line and column of `rel` (or the whole file).
    pub(crate) fn push_at(
        &mut self,
        rule: &str,
        severity: Severity,
        rel: &str,
        at: Option<(u32, u32)>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let location = self.location(rel, at);
        self.items.push((
            rel.to_string(),
            Finding {
                rule: rule.to_string(),
                severity,
                original_severity: severity,
                script: Some(self.script.to_string()),
                location,
                message: message.into(),
                help: help.into(),
                waiver: None,
            },
        ));
    }

    /// A finding about a whole file.
    pub(crate) fn push_file(
        &mut self,
        rule: &str,
        severity: Severity,
        rel: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push_at(rule, severity, rel, None, message, help);
    }
}

/// The text searched in one file: decoded text, or raw bytes when it did not decode.
enum Haystack<'b> {
    Text(&'b str),
    Bytes(&'b [u8]),
}

impl Haystack<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Haystack::Text(t) => t.as_bytes(),
            Haystack::Bytes(b) => b,
        }
    }

    fn line_col(&self, offset: usize) -> (u32, u32) {
        match self {
            Haystack::Text(t) => line_col(t, offset),
            Haystack::Bytes(b) => bytes_line_col(b, offset),
        }
    }
}

/// Line and column (in characters, lossily decoded) of a byte offset in raw bytes.
fn bytes_line_col(bytes: &[u8], offset: usize) -> (u32, u32) {
    let offset = offset.min(bytes.len());
    let before = &bytes[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() as u32 + 1;
    let start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&bytes[start..offset])
        .chars()
        .count() as u32
        + 1;
    (line, column)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

impl Scanner {
    /// Compiles the policy's content rules, publisher keys and waivers.
    pub fn new(policy: &Policy) -> Result<Scanner, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let rules = CompiledRules::new(&policy.rules).map_err(|e| errors.extend(e));
        let keys = signature::decode_keys(&policy.publisher_keys, "policies/")
            .map_err(|e| errors.extend(e));
        let mut waivers = Vec::new();
        for w in &policy.waivers {
            let script = Glob::new(&w.script).map(|g| g.compile_matcher());
            let file = w
                .file
                .as_deref()
                .map(|f| Glob::new(f).map(|g| g.compile_matcher()))
                .transpose();
            match (script, file) {
                (Ok(script), Ok(file)) => waivers.push(CompiledWaiver {
                    script,
                    file,
                    waiver: w.clone(),
                }),
                (Err(e), _) | (_, Err(e)) => errors.push(ConfigError::new(
                    Location::file("policies/"),
                    format!("waiver for `{}` on `{}`: bad glob: {e}", w.rule, w.script),
                    None,
                )),
            }
        }
        match (rules, keys) {
            (Ok(rules), Ok(keys)) if errors.is_empty() => Ok(Scanner {
                limits: policy.limits.clone(),
                parses: Mutex::new(HashMap::new()),
                allowed_extensions: policy.validation.allowed_extensions.clone(),
                keys,
                rules,
                waivers,
                threads: crate::par::cores(),
                syntax: true,
            }),
            _ => Err(errors),
        }
    }

    /// Sets how many threads `scan_library` uses (default: the available parallelism).
    pub fn with_threads(mut self, threads: usize) -> Scanner {
        self.threads = threads.max(1);
        self
    }

    /// Whether entry files are parsed (default: yes). Without parsing there are no
    /// `syntax.*` findings and no command rules (`commands`); every other check and
    /// every regex rule (`pattern`) still runs. Parsing is most of a scan's CPU time, so
    /// this is for quick local checks (`quiver lint --no-syntax`), never for approval.
    pub fn with_syntax(mut self, syntax: bool) -> Scanner {
        self.syntax = syntax;
        self
    }

    /// Whether this scanner parses entry files (see [`Scanner::with_syntax`]).
    pub fn checks_syntax(&self) -> bool {
        self.syntax
    }

    /// Scans one script; `root` prefixes file locations (library folder or repo path).
    pub fn scan_script(&self, root: &str, script: &Script) -> Vec<Finding> {
        let mut sink = Sink::new(root, script);
        paths::check_script(
            &mut sink,
            script,
            &self.limits,
            self.allowed_extensions.as_deref(),
        );
        // The interpreters each entry file is started with.
        let mut entries: BTreeMap<&str, Vec<Interpreter>> = BTreeMap::new();
        for launch in script.manifest.entries.values() {
            let list = entries.entry(launch.file.as_str()).or_default();
            if !list.contains(&launch.interpreter) {
                list.push(launch.interpreter);
            }
        }
        for (rel, entry) in &script.files {
            let TreeEntry::File { bytes, .. } = entry else {
                continue;
            };
            if bytes.len() as u64 > self.limits.max_file_size {
                continue; // refused by size already; not worth reading
            }
            if let Some(subject) = rel.strip_suffix(".minisig")
                && script.files.contains_key(subject)
            {
                continue; // a signature, checked with its subject
            }
            let interpreters = entries.get(rel.as_str()).map_or(&[][..], Vec::as_slice);
            if interpreters.contains(&Interpreter::Executable)
                || signature::is_executable(rel, bytes)
            {
                self.check_signature(&mut sink, script, rel, bytes);
                continue;
            }
            let language = interpreters
                .first()
                .map_or_else(|| Language::from_path(rel), |i| i.language());
            if language == Language::Binary {
                continue;
            }
            self.scan_text(&mut sink, script, rel, bytes, language, interpreters);
        }
        self.finish(script, sink)
    }

    fn check_signature(&self, sink: &mut Sink<'_>, script: &Script, rel: &str, bytes: &[u8]) {
        let sig_path = format!("{rel}.minisig");
        let sig = match script.files.get(&sig_path) {
            Some(TreeEntry::File { bytes, .. }) => Some(&bytes[..]),
            _ => None,
        };
        let kind = signature::magic(bytes).unwrap_or("executable");
        match signature::verify(bytes, sig, &self.keys) {
            Verdict::Trusted { .. } => {}
            Verdict::Missing => sink.push_file(
                "signature.missing",
                Severity::Deny,
                rel,
                format!("{kind} file without a signature (`{sig_path}`)"),
                "sign it with a publisher key pinned in policy: `minisign -Sm <file>`, and commit the .minisig beside it",
            ),
            Verdict::Untrusted => sink.push_file(
                "signature.untrusted",
                Severity::Deny,
                rel,
                if self.keys.is_empty() {
                    format!("`{sig_path}` cannot be trusted: policy pins no publisher keys")
                } else {
                    format!(
                        "`{sig_path}` is by a key that is not pinned in policy (pinned: {})",
                        self.keys
                            .iter()
                            .map(|k| k.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                "have a pinned publisher sign it, or pin the signer's key in [[publisher_key]] (that is a policy change)",
            ),
            Verdict::Invalid(why) => sink.push_file(
                "signature.invalid",
                Severity::Deny,
                rel,
                why,
                "re-sign the exact file that is committed; a mismatch means the binary or its signature changed",
            ),
        }
    }

    fn scan_text(
        &self,
        sink: &mut Sink<'_>,
        script: &Script,
        rel: &str,
        bytes: &[u8],
        language: Language,
        interpreters: &[Interpreter],
    ) {
        let is_script = matches!(
            language,
            Language::Powershell | Language::Shell | Language::Python
        );
        let is_entry = !interpreters.is_empty();
        if !is_script && !is_entry && encoding::looks_binary(bytes) {
            return; // data, not text
        }
        let is_shell_entry = interpreters
            .iter()
            .any(|i| matches!(i, Interpreter::Bash | Interpreter::Sh | Interpreter::Zsh));
        if is_shell_entry && !bytes.starts_with(b"#!") {
            let why = if bytes.starts_with(b"\xEF\xBB\xBF") {
                "starts with a UTF-8 byte-order mark, so the kernel does not see its `#!` line"
            } else if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
                "is UTF-16, which shells cannot read"
            } else {
                "does not start with a `#!` line"
            };
            sink.push_at(
                "shell.no-shebang",
                Severity::Deny,
                rel,
                Some((1, 1)),
                format!("shell entry {why}"),
                "start the file with e.g. `#!/bin/sh` (or `#!/usr/bin/env bash`), saved as UTF-8 without BOM",
            );
        }
        let decoded = match encoding::decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                if is_script || is_entry {
                    let (line, col) = bytes_line_col(bytes, e.offset);
                    sink.push_at(
                        "encoding.invalid",
                        Severity::Deny,
                        rel,
                        Some((line, col)),
                        format!("not valid {} text: {}", e.encoding.as_str(), e.reason),
                        "save the file as UTF-8 (PowerShell: UTF-8 with BOM); interpreters and the scanner would read it differently",
                    );
                }
                self.content(
                    sink,
                    rel,
                    &Haystack::Bytes(bytes),
                    language,
                    interpreters,
                    None,
                );
                return;
            }
        };
        let text: &str = &decoded.text;
        if matches!(language, Language::Shell | Language::Python)
            && let Some((at, count)) = encoding::crlf(text)
        {
            let (line, col) = line_col(text, at);
            sink.push_at(
                "encoding.crlf",
                Severity::Deny,
                rel,
                Some((line, col)),
                format!(
                    "{} end in CRLF; the shebang and every command get a stray `\\r` on the endpoint",
                    plural(count, "line", "lines")
                ),
                "convert to LF line endings (and add `*.sh text eol=lf` to the repository's .gitattributes)",
            );
        }
        if language == Language::Powershell
            && decoded.encoding == encoding::TextEncoding::Utf8
            && let Some(at) = encoding::first_non_ascii(text)
        {
            let (line, col) = line_col(text, at);
            let ch = text[at..].chars().next().unwrap_or('?');
            let windows_powershell = script
                .manifest
                .entries
                .values()
                .any(|l| l.interpreter == Interpreter::Powershell);
            sink.push_at(
                "encoding.ps1-non-ascii-no-bom",
                if windows_powershell {
                    Severity::Deny
                } else {
                    Severity::Warn
                },
                rel,
                Some((line, col)),
                format!(
                    "non-ASCII character `{ch}` (U+{:04X}) in a PowerShell file without a byte-order mark; Windows PowerShell 5.1 reads it as ANSI and mangles it",
                    ch as u32
                ),
                "save the file as UTF-8 with BOM, or replace the character with ASCII (e.g. an en dash with `-`)",
            );
        }
        if is_script
            && !decoded.encoding.is_utf16()
            && let Some((at, count)) = encoding::nul(text)
        {
            let (line, col) = line_col(text, at);
            sink.push_at(
                "encoding.nul",
                Severity::Deny,
                rel,
                Some((line, col)),
                format!(
                    "{} in a text script; interpreters stop or skip there, so what runs differs from what was reviewed",
                    plural(count, "NUL byte", "NUL bytes")
                ),
                "remove the NUL bytes; if the file is UTF-16, save it with a byte-order mark (or as UTF-8)",
            );
        }
        // zsh has no grammar (the bash one rejects valid zsh), so an entry started only
        // by zsh gets no syntax check and no command rules; its regex rules still apply.
        let zsh_only = interpreters.iter().all(|i| *i == Interpreter::Zsh);
        let parse_language = (self.syntax && is_entry && !zsh_only && syntax::has_tree(language))
            .then_some(language);
        self.content(
            sink,
            rel,
            &Haystack::Text(text),
            language,
            interpreters,
            parse_language,
        );
    }

    /// Regex rules, and for entries the parse: syntax errors and command rules.
    fn content(
        &self,
        sink: &mut Sink<'_>,
        rel: &str,
        hay: &Haystack<'_>,
        language: Language,
        interpreters: &[Interpreter],
        parse: Option<Language>,
    ) {
        let mut hits: Vec<Hit> = self.rules.match_text(language, hay.bytes());
        if let (Some(lang), Haystack::Text(text)) = (parse, hay) {
            if text.len() > MAX_PARSE_SIZE {
                sink.push_at(
                    "syntax.skipped",
                    Severity::Info,
                    rel,
                    None,
                    format!(
                        "not parsed: larger than {} (syntax and command rules skipped; regex rules applied)",
                        paths::human(MAX_PARSE_SIZE as u64)
                    ),
                    "split the script, or review its syntax by hand",
                );
            } else if let Some(parsed) = self.parse(lang, text) {
                self.syntax_finding(sink, rel, text, lang, interpreters, &parsed);
                hits.extend(parsed.hits.iter().cloned());
            }
        }
        // One finding per rule: a rule with both a pattern and commands may hit twice.
        hits.sort_by_key(|h| (h.rule, h.offset));
        hits.dedup_by(|later, first| {
            if later.rule == first.rule {
                first.count = first.count.max(later.count);
                true
            } else {
                false
            }
        });
        for hit in hits {
            let info = &self.rules.info[hit.rule];
            let mut message = info.message.clone();
            if hit.count > 1 {
                message.push_str(&format!(
                    " ({} in this file; the first is shown)",
                    plural(hit.count, "match", "matches")
                ));
            }
            let at = hay.line_col(hit.offset);
            sink.push_at(
                &info.id,
                info.severity,
                rel,
                Some(at),
                message,
                info.help.clone(),
            );
        }
    }

    /// Parses an entry and matches the command rules, once per distinct content: the
    /// outcome depends only on the language, the text and this scanner's rules, so it is
    /// kept (keyed by the SHA-256 of the text) and a rescan parses only what changed.
    fn parse(&self, lang: Language, text: &str) -> Option<Arc<ParseOutcome>> {
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            h.update([lang as u8]);
            h.update(text.as_bytes());
            h.finalize().into()
        };
        if let Some(hit) = self.parses.lock().ok()?.get(&key) {
            return Some(hit.clone());
        }
        let parsed = syntax::parse(lang, text, self.rules.has_commands(lang))?;
        let outcome = Arc::new(ParseOutcome {
            hits: self.rules.match_commands(lang, text, &parsed.commands),
            error: parsed.error,
            error_count: parsed.error_count,
        });
        if let Ok(mut cache) = self.parses.lock() {
            if cache.len() >= PARSE_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, outcome.clone());
        }
        Some(outcome)
    }

    fn syntax_finding(
        &self,
        sink: &mut Sink<'_>,
        rel: &str,
        text: &str,
        lang: Language,
        interpreters: &[Interpreter],
        parsed: &ParseOutcome,
    ) {
        let Some(err) = &parsed.error else {
            return;
        };
        let count = parsed.error_count;
        // Deny for the interpreters the grammar describes; warn for pwsh (PowerShell 7
        // syntax the grammar lacks).
        let strict = interpreters.iter().any(|i| {
            matches!(
                i,
                Interpreter::Powershell | Interpreter::Bash | Interpreter::Sh
            )
        });
        let mut severity = if strict {
            Severity::Deny
        } else {
            Severity::Warn
        };
        let (rule, tool) = match lang {
            Language::Powershell => ("syntax.powershell", "PowerShell"),
            _ => ("syntax.shell", "shell"),
        };
        let mut message = format!("{tool} parse error: {}", err.message);
        if let Some(open) = &err.unclosed {
            if open.offset == err.offset {
                message.push_str(&format!(" (the `{}` here is never closed)", open.token));
            } else {
                let (line, _) = line_col(text, open.offset);
                message.push_str(&format!(" (to close the `{}` on line {line})", open.token));
            }
        }
        if count > 1 {
            message.push_str(&format!(
                " ({} in this file; the first is shown)",
                plural(count, "error", "errors")
            ));
        }
        let mut help =
            "fix the syntax; the interpreter would stop at or before this line".to_string();
        if let Some(gap) = err.known_gap {
            severity = Severity::Warn;
            message.push_str(&format!(
                "; this looks like {gap}, valid {tool} that the parser does not support"
            ));
            help = "check the line runs; if it does, ignore this warning or write it more plainly (e.g. separate switch clauses with `;`)".into();
        }
        let at = line_col(text, err.offset);
        sink.push_at(rule, severity, rel, Some(at), message, help);
    }

    /// Applies waivers and orders the script's findings.
    fn finish(&self, script: &Script, sink: Sink<'_>) -> Vec<Finding> {
        let mut out: Vec<Finding> = sink
            .items
            .into_iter()
            .map(|(rel, mut f)| {
                if let Some(w) = self.waivers.iter().find(|w| {
                    w.waiver.rule == f.rule
                        && w.script.is_match(&script.name)
                        && w.file.as_ref().is_none_or(|g| {
                            w.waiver.file.as_deref() == Some(&rel) || g.is_match(&rel)
                        })
                }) {
                    f.severity = Severity::Info;
                    f.waiver = Some(AppliedWaiver {
                        reason: w.waiver.reason.clone(),
                        by: w.waiver.by.clone(),
                    });
                }
                f
            })
            .collect();
        sort_findings(&mut out);
        out
    }

    /// Scans a whole library, including library-wide limits and broken manifests.
    pub fn scan_library(&self, lib: &Library) -> ScanReport {
        let mut report = ScanReport {
            scripts: lib.scripts.len(),
            ..ScanReport::default()
        };
        for broken in &lib.broken {
            for err in &broken.errors {
                report.findings.push(Finding {
                    rule: "manifest.invalid".into(),
                    severity: Severity::Deny,
                    original_severity: Severity::Deny,
                    script: None,
                    location: err.location.clone(),
                    message: err.message.clone(),
                    help: err
                        .hint
                        .clone()
                        .unwrap_or_else(|| "fix script.toml; docs/ describes every field".into()),
                    waiver: None,
                });
            }
        }
        for s in &lib.scripts {
            for entry in s.files.values() {
                if let TreeEntry::File { bytes, .. } = entry {
                    report.files += 1;
                    report.bytes += bytes.len() as u64;
                }
            }
        }
        let root = if lib.root.is_empty() {
            "."
        } else {
            lib.root.as_str()
        };
        let library_finding = |rule: &str, message: String, help: &str| Finding {
            rule: rule.into(),
            severity: Severity::Deny,
            original_severity: Severity::Deny,
            script: None,
            location: Location::file(root),
            message,
            help: help.into(),
            waiver: None,
        };
        if report.scripts as u64 > self.limits.max_scripts {
            report.findings.push(library_finding(
                "limits.script-count",
                format!(
                    "the library has {} scripts, over limits.max_scripts of {}",
                    report.scripts, self.limits.max_scripts
                ),
                "remove unused scripts, or raise limits.max_scripts in policy",
            ));
        }
        if report.bytes > self.limits.max_library_size {
            report.findings.push(library_finding(
                "limits.library-size",
                format!(
                    "the library is {} ({} bytes), over limits.max_library_size of {}",
                    paths::human(report.bytes),
                    report.bytes,
                    paths::human(self.limits.max_library_size)
                ),
                "remove large files, or raise limits.max_library_size in policy",
            ));
        }
        report.findings.extend(self.scan_scripts(lib));
        sort_findings(&mut report.findings);
        report
    }

    /// Scans every script, on several threads when there is enough work.
    fn scan_scripts(&self, lib: &Library) -> Vec<Finding> {
        let threads = self.threads.min(lib.scripts.len().div_ceil(4));
        crate::par::map(&lib.scripts, threads, |s| self.scan_script(&lib.root, s))
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests;
