//! SARIF 2.1.0 output, shaped the way GitHub code scanning ingests it: one run, the tool's
//! rules (content rules from policy, the scanner's built-in checks, `policy.invalid`),
//! results with repository-relative `uri`s and 1-based regions, and waived findings as
//! results with an `external` suppression that carries the waiver's reason.
//!
//! Built with `serde_json::json!` rather than a model crate: the subset used is small, and
//! `tests/lint_sarif.rs` validates the output against the official schema.

use super::{MANIFEST_INVALID, Outcome, POLICY_INVALID, Paths};
use quiver_core::{ConfigError, Location, Severity};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The published location of the SARIF 2.1.0 schema.
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// One rule as described to SARIF consumers.
#[derive(Debug, Clone)]
pub struct RuleDoc {
    /// Rule or check id.
    pub id: String,
    /// One sentence: what it finds.
    pub short: String,
    /// What to do about it, when the rule says.
    pub help: String,
    /// The severity the rule states, for content rules.
    pub severity: Option<Severity>,
}

fn level(sev: Severity) -> &'static str {
    match sev {
        Severity::Deny => "error",
        Severity::Warn => "warning",
        Severity::Info => "note",
    }
}

/// Renders the outcome as a SARIF log.
pub fn render(outcome: &Outcome, paths: &Paths) -> Value {
    let mut rules: Vec<RuleDoc> = outcome.rules.clone();
    let mut index: BTreeMap<String, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    // A finding from a check this build does not describe still gets a rule entry, so
    // every `ruleIndex` points somewhere.
    let mut rule_index = |id: &str| -> usize {
        if let Some(i) = index.get(id) {
            return *i;
        }
        rules.push(RuleDoc {
            id: id.to_string(),
            short: id.to_string(),
            help: String::new(),
            severity: None,
        });
        index.insert(id.to_string(), rules.len() - 1);
        rules.len() - 1
    };

    let mut results = Vec::new();
    for err in &outcome.errors {
        let i = rule_index(POLICY_INVALID);
        results.push(json!({
            "ruleId": POLICY_INVALID,
            "ruleIndex": i,
            "level": "error",
            "message": { "text": config_text(err) },
            "locations": [location(&err.location, &paths.policies, &paths.policies_in_repo)],
        }));
    }
    for f in &outcome.findings {
        let i = rule_index(&f.rule);
        let mut text = f.message.clone();
        if !f.help.is_empty() {
            text.push_str("\nhelp: ");
            text.push_str(&f.help);
        }
        let mut result = json!({
            "ruleId": f.rule,
            "ruleIndex": i,
            // A waived finding keeps the level its rule states; the suppression says why
            // it is accepted, which is how code scanning shows it as dismissed.
            "level": level(if f.waiver.is_some() { f.original_severity } else { f.severity }),
            "message": { "text": text },
            "locations": [location(&f.location, &paths.root, &paths.root_in_repo)],
        });
        if let Some(script) = &f.script {
            result["properties"] = json!({ "script": script });
        }
        if let Some(w) = &f.waiver {
            result["suppressions"] = json!([{
                "kind": "external",
                "status": "accepted",
                "justification": format!("{} (waived by {})", w.reason, w.by),
            }]);
        }
        results.push(result);
    }

    let notifications: Vec<Value> = outcome
        .warnings
        .iter()
        .map(|w| {
            json!({
                "level": "warning",
                "message": { "text": config_text(w) },
                "locations": [location(&w.location, &paths.policies, &paths.policies_in_repo)],
            })
        })
        .collect();
    let mut invocation = json!({ "executionSuccessful": outcome.errors.is_empty() });
    if !notifications.is_empty() {
        invocation["toolConfigurationNotifications"] = Value::Array(notifications);
    }
    if !outcome.syntax_checked && outcome.errors.is_empty() {
        invocation["toolExecutionNotifications"] = json!([{
            "level": "note",
            "message": { "text": "syntax not checked (--no-syntax): entry files were not parsed, so there are no syntax findings and no command rules" },
        }]);
    }

    let version = env!("CARGO_PKG_VERSION");
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "quiver",
                    "version": version,
                    "semanticVersion": version,
                    "rules": rules.iter().map(rule).collect::<Vec<_>>(),
                }
            },
            "invocations": [invocation],
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

fn rule(r: &RuleDoc) -> Value {
    let mut v = json!({
        "id": r.id,
        "shortDescription": { "text": r.short },
        "fullDescription": { "text": r.short },
        "properties": { "tags": tags(&r.id) },
    });
    if !r.help.is_empty() {
        v["help"] = json!({ "text": r.help });
    }
    if let Some(sev) = r.severity {
        v["defaultConfiguration"] = json!({ "level": level(sev) });
        // Code scanning ranks security alerts by this score (high ≥ 7, medium ≥ 4).
        v["properties"]["security-severity"] = json!(match sev {
            Severity::Deny => "8.0",
            Severity::Warn => "5.0",
            Severity::Info => "2.0",
        });
    }
    v
}

fn tags(id: &str) -> Vec<&'static str> {
    let family = id.split('.').next().unwrap_or("");
    match family {
        "limits" | "path" | "file" | "encoding" | "shell" | "syntax" => vec!["correctness"],
        "manifest" | "policy" => vec!["configuration"],
        _ if id == MANIFEST_INVALID || id == POLICY_INVALID => vec!["configuration"],
        _ => vec!["security"],
    }
}

fn config_text(err: &ConfigError) -> String {
    match &err.hint {
        Some(h) => format!("{}\nhint: {h}", err.message),
        None => err.message.clone(),
    }
}

fn location(loc: &Location, shown: &str, in_repo: &str) -> Value {
    let mut region = json!({ "startLine": loc.line.unwrap_or(1).max(1) });
    if let (Some(_), Some(col)) = (loc.line, loc.column) {
        region["startColumn"] = json!(col.max(1));
    }
    json!({
        "physicalLocation": {
            "artifactLocation": { "uri": uri(&rebase(&loc.file, shown, in_repo)) },
            "region": region,
        }
    })
}

/// Re-roots `file` (which starts with `from` as shown to people) at `to` (the same
/// folder relative to the repository).
fn rebase(file: &str, from: &str, to: &str) -> String {
    let rest = if from.is_empty() {
        Some(file)
    } else if file == from {
        Some("")
    } else {
        file.strip_prefix(from).and_then(|r| r.strip_prefix('/'))
    };
    match rest {
        Some(rest) if to.is_empty() => rest.to_string(),
        Some("") => to.to_string(),
        Some(rest) => format!("{to}/{rest}"),
        None => file.to_string(),
    }
}

/// A relative URI reference for a path: unreserved characters and `/` as they are,
/// everything else percent-encoded (UTF-8).
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() { ".".to_string() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_repository_relative_uris() {
        assert_eq!(rebase("lib/a/b.ps1", "lib", "x/lib"), "x/lib/a/b.ps1");
        assert_eq!(rebase("a/b.ps1", "", "lib"), "lib/a/b.ps1");
        assert_eq!(rebase("/abs/lib/a.sh", "/abs/lib", ""), "a.sh");
        assert_eq!(rebase("lib", "lib", "lib"), "lib");
        assert_eq!(uri("lib/Get Users.ps1"), "lib/Get%20Users.ps1");
        assert_eq!(uri("lib/é.sh"), "lib/%C3%A9.sh");
    }
}
