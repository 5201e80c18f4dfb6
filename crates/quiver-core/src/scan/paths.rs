//! Limits and paths: what can be judged from names, sizes and the manifest alone.
//!
//! Every file of a script is written into the endpoint's cache under the script's
//! folder, on Windows, macOS and Linux alike. A name that escapes the folder, that two
//! files share on a case-insensitive file system, that Windows cannot store, or a link
//! that points elsewhere would let one script overwrite another's files (or anything
//! else the agent can write), so these are refused before any content is looked at.

use super::Sink;
use crate::diag::Severity;
use crate::library::{MANIFEST, Script};
use crate::manifest::Platform;
use crate::policy::Limits;
use crate::tree::TreeEntry;
use std::collections::BTreeMap;
use std::time::Duration;

/// Names Windows reserves for devices, with or without an extension.
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// A human-readable size (`20 MiB`, `812 B`).
pub(crate) fn human(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// Why a path is not safe to write under the script folder, if it is not.
pub(crate) fn escape_problem(path: &str) -> Option<(&'static str, String)> {
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if path.starts_with('/') || path.starts_with('\\') || drive {
        return Some((
            "path.absolute",
            format!("`{path}` is an absolute path; it must be relative to the script folder"),
        ));
    }
    if path.split(['/', '\\']).any(|c| c == "..") {
        return Some((
            "path.traversal",
            format!("`{path}` uses `..` and leaves the script folder"),
        ));
    }
    None
}

/// Why one path component cannot be stored on Windows, if it cannot.
pub(crate) fn windows_problem(name: &str) -> Option<String> {
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*' | '\\') || (*c as u32) < 32)
    {
        return Some(format!(
            "`{name}` contains {}, which Windows does not allow in a file name",
            if (c as u32) < 32 {
                format!("the control character U+{:04X}", c as u32)
            } else {
                format!("`{c}`")
            }
        ));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Some(format!(
            "`{name}` ends with a dot or a space, which Windows strips (so it names another file)"
        ));
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return Some(format!(
            "`{name}` is the reserved device name `{stem}` on Windows"
        ));
    }
    None
}

/// Checks names, links, sizes and the manifest of one script.
pub(crate) fn check_script(
    sink: &mut Sink<'_>,
    script: &Script,
    limits: &Limits,
    allowed: Option<&[String]>,
) {
    let for_windows = script.manifest.entries.contains_key(&Platform::Windows);
    // Case collisions: every file and every folder on the way to it, folded.
    let mut folded: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for path in script.files.keys() {
        let mut end = 0;
        for comp in path.split('/') {
            end += comp.len();
            let prefix = &path[..end];
            let key = prefix.to_lowercase();
            let seen = folded.entry(key).or_default();
            if !seen.contains(&prefix) {
                seen.push(prefix);
            }
            end += 1;
        }
    }
    let mut reported = Vec::new();
    for names in folded.values().filter(|n| n.len() > 1) {
        let (first, others) = names.split_first().expect("more than one");
        // Report at the later names, so the file that came second is the one to rename.
        for other in others {
            let rel = script
                .files
                .keys()
                .find(|k| {
                    k.as_str() == *other
                        || k.strip_prefix(*other).is_some_and(|r| r.starts_with('/'))
                })
                .map(String::as_str)
                .unwrap_or(other);
            if reported.contains(&rel) {
                continue;
            }
            reported.push(rel);
            sink.push_file(
                "path.case-collision",
                Severity::Deny,
                rel,
                format!("`{other}` and `{first}` are the same path on Windows and macOS, which ignore case"),
                "rename one of them; on a case-insensitive file system one would overwrite the other",
            );
        }
    }

    for (rel, entry) in &script.files {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        match entry {
            TreeEntry::Symlink { target } => sink.push_file(
                "path.symlink",
                Severity::Deny,
                rel,
                format!("`{rel}` is a symbolic link to `{target}`; the script is refused"),
                "replace the link with the file itself; links could point anywhere on the endpoint",
            ),
            TreeEntry::Submodule => sink.push_file(
                "path.submodule",
                Severity::Deny,
                rel,
                format!("`{rel}` is a git submodule, whose content is not in this repository"),
                "copy the files you need into the script folder so they are reviewed with it",
            ),
            TreeEntry::File { bytes, .. } => {
                let size = bytes.len() as u64;
                if size > limits.max_file_size {
                    sink.push_file(
                        "limits.file-size",
                        Severity::Deny,
                        rel,
                        format!(
                            "file is {} ({size} bytes), over limits.max_file_size of {} ({} bytes)",
                            human(size),
                            human(limits.max_file_size),
                            limits.max_file_size
                        ),
                        "make the file smaller, or raise limits.max_file_size in policy",
                    );
                }
            }
        }
        if let Some((rule, msg)) = escape_problem(rel) {
            sink.push_file(
                rule,
                Severity::Deny,
                rel,
                msg,
                "keep every file inside the script folder",
            );
        }
        for comp in rel.split('/') {
            let lower = comp.to_ascii_lowercase();
            if !lower.starts_with(".git") {
                continue;
            }
            let special = matches!(lower.as_str(), ".git" | ".gitmodules" | ".gitattributes");
            sink.push_file(
                "path.git",
                if special {
                    Severity::Deny
                } else {
                    Severity::Warn
                },
                rel,
                if special {
                    format!(
                        "`{comp}` inside a script folder can change how git checks the library out"
                    )
                } else {
                    format!("`{comp}` is git metadata, delivered to endpoints with the script")
                },
                "remove it from the script folder; keep git settings at the repository root",
            );
            break;
        }
        if let Some(msg) = rel.split('/').find_map(windows_problem) {
            sink.push_file(
                "path.windows-invalid",
                if for_windows {
                    Severity::Deny
                } else {
                    Severity::Warn
                },
                rel,
                msg,
                "rename the file; Windows endpoints (and authors on Windows) cannot store it",
            );
        }
        if let Some(allowed) = allowed {
            let ext = match name.rsplit_once('.') {
                Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
                _ => String::new(),
            };
            let exempt = rel == MANIFEST
                || (ext == "minisig" && script.files.contains_key(&rel[..rel.len() - 8]));
            if !exempt
                && !allowed
                    .iter()
                    .any(|a| a.trim_start_matches('.').eq_ignore_ascii_case(&ext))
            {
                sink.push_file(
                    "file.type",
                    Severity::Deny,
                    rel,
                    if ext.is_empty() {
                        "a file without an extension is not in validation.allowed_extensions"
                            .to_string()
                    } else {
                        format!("`.{ext}` files are not in validation.allowed_extensions")
                    },
                    "remove the file, or add its extension to validation.allowed_extensions",
                );
            }
        }
    }
    check_manifest(sink, script, limits);
}

/// The 1-based line of the first `key = …` line in TOML text (approximate, for messages).
fn key_line(text: &str, key: &str) -> Option<u32> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i as u32 + 1)
}

fn check_manifest(sink: &mut Sink<'_>, script: &Script, limits: &Limits) {
    let manifest_text = match script.files.get(MANIFEST) {
        Some(TreeEntry::File { bytes, .. }) if !script.discovered => std::str::from_utf8(bytes)
            .ok()
            .map(|t| t.trim_start_matches('\u{feff}')),
        _ => None,
    };
    // Where to point: script.toml for manifests, the file itself for discovered scripts.
    let home = if script.discovered {
        script.files.keys().next().cloned().unwrap_or_default()
    } else {
        MANIFEST.to_string()
    };
    let at_value = |needle: &str| -> Option<(u32, u32)> {
        let text = manifest_text?;
        let loc = crate::diag::find_value_location("", text, needle);
        Some((loc.line?, loc.column?))
    };
    if script.manifest.timeout > limits.max_timeout {
        let line = manifest_text.and_then(|t| key_line(t, "timeout"));
        sink.push_at(
            "limits.timeout",
            Severity::Deny,
            &home,
            line.map(|l| (l, 1)),
            format!(
                "timeout {} is above limits.max_timeout of {}",
                fmt_duration(script.manifest.timeout),
                fmt_duration(limits.max_timeout)
            ),
            "lower the timeout, or raise limits.max_timeout in policy",
        );
    }
    let mut seen = Vec::new();
    for (platform, launch) in &script.manifest.entries {
        if seen.contains(&&launch.file) {
            continue;
        }
        seen.push(&launch.file);
        if let Some((rule, msg)) = escape_problem(&launch.file) {
            sink.push_at(
                rule,
                Severity::Deny,
                &home,
                at_value(&launch.file),
                format!("entry for {platform}: {msg}"),
                "name a file inside the script folder, relative to it",
            );
            continue;
        }
        match script.files.get(&launch.file) {
            Some(TreeEntry::File { .. }) => {}
            Some(_) => {} // a link or submodule is reported by its own check
            None => sink.push_at(
                "manifest.entry-missing",
                Severity::Deny,
                &home,
                at_value(&launch.file),
                format!(
                    "entry file `{}` for {platform} is not in the script folder",
                    launch.file
                ),
                "add the file, or fix the name in script.toml (names are case-sensitive)",
            ),
        }
    }
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_names() {
        assert!(windows_problem("a:b").is_some());
        assert!(windows_problem("CON").is_some());
        assert!(windows_problem("nul.txt").is_some());
        assert!(windows_problem("com1.ps1").is_some());
        assert!(windows_problem("x.").is_some());
        assert!(windows_problem("x ").is_some());
        assert!(windows_problem("console.ps1").is_none());
        assert!(windows_problem("Get-X.ps1").is_none());
    }

    #[test]
    fn escapes() {
        assert_eq!(
            escape_problem("../../etc/passwd").unwrap().0,
            "path.traversal"
        );
        assert_eq!(escape_problem("/etc/passwd").unwrap().0, "path.absolute");
        assert_eq!(escape_problem("C:\\x").unwrap().0, "path.absolute");
        assert!(escape_problem("a/..b/c").is_none());
    }
}
