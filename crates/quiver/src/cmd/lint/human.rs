//! The report for people: findings grouped by script, each as
//! `file:line:col: severity rule: message` so editors and terminals can jump to it, with
//! help and waiver lines under it, and one summary line at the end.

use super::Outcome;
use quiver_core::Severity;
use quiver_core::scan::Finding;
use std::fmt::Write;

/// ANSI styling, or nothing when the output is not a terminal.
struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(&self, text: &str) -> String {
        self.wrap("1", text)
    }
    fn dim(&self, text: &str) -> String {
        self.wrap("2", text)
    }
    fn severity(&self, sev: Severity, text: &str) -> String {
        match sev {
            Severity::Deny => self.wrap("1;31", text),
            Severity::Warn => self.wrap("1;33", text),
            Severity::Info => self.wrap("1;36", text),
        }
    }
}

/// Renders the whole report.
pub fn render(outcome: &Outcome, color: bool) -> String {
    let paint = Paint { on: color };
    let mut out = String::new();
    for err in &outcome.errors {
        let _ = writeln!(out, "{}", paint.bold(&err.to_string()));
    }
    for warning in &outcome.warnings {
        let _ = writeln!(
            out,
            "{}: {}",
            paint.severity(Severity::Warn, "warning"),
            warning
        );
    }
    if !(outcome.errors.is_empty() && outcome.warnings.is_empty()) {
        out.push('\n');
    }
    let mut current: Option<Option<&str>> = None;
    for f in &outcome.findings {
        let script = f.script.as_deref();
        if current != Some(script) {
            if current.is_some() {
                out.push('\n');
            }
            current = Some(script);
            let heading = match script {
                Some(name) => match outcome.script_dirs.get(name) {
                    Some(dir) => format!("{} {}", paint.bold(name), paint.dim(&format!("({dir})"))),
                    None => paint.bold(name),
                },
                None => paint.bold(&format!(
                    "library-wide ({})",
                    if outcome.root.is_empty() {
                        "."
                    } else {
                        outcome.root.as_str()
                    }
                )),
            };
            let _ = writeln!(out, "{heading}");
        }
        finding(&mut out, &paint, f);
    }
    if !outcome.findings.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{}", paint.bold(&outcome.summary_line()));
    out
}

fn finding(out: &mut String, paint: &Paint, f: &Finding) {
    let severity = match &f.waiver {
        Some(_) => format!("{} (waived {})", f.severity, f.original_severity),
        None => f.severity.to_string(),
    };
    let _ = writeln!(
        out,
        "  {}: {} {}: {}",
        paint.bold(&f.location.to_string()),
        paint.severity(f.severity, &severity),
        f.rule,
        f.message
    );
    if !f.help.is_empty() {
        let _ = writeln!(out, "      {} {}", paint.dim("help:"), f.help);
    }
    if let Some(w) = &f.waiver {
        let _ = writeln!(
            out,
            "      {} {}",
            paint.dim(&format!("waived by {}:", w.by)),
            w.reason
        );
    }
}
