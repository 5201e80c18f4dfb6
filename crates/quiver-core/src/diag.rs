//! Locations and diagnostics shared by the manifest, policy and scanner code.
//!
//! Every message a user reads names a file and, where there is one, a line and column,
//! because a reviewer fixing a pull request needs to land on the exact spot.

use serde::Serialize;
use std::fmt;

/// A position in a file of the library or policy tree (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// Path relative to the repository (or lint) root, `/`-separated.
    pub file: String,
    /// 1-based line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column (in characters of the decoded text), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

impl Location {
    /// A location naming only a file.
    pub fn file(file: impl Into<String>) -> Self {
        Location {
            file: file.into(),
            line: None,
            column: None,
        }
    }

    /// A location at a line and column.
    pub fn at(file: impl Into<String>, line: u32, column: u32) -> Self {
        Location {
            file: file.into(),
            line: Some(line),
            column: Some(column),
        }
    }

    /// The location of a byte offset in `text`.
    pub fn of_offset(file: impl Into<String>, text: &str, offset: usize) -> Self {
        let (line, column) = line_col(text, offset);
        Location::at(file, line, column)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        Ok(())
    }
}

/// 1-based line and column (counted in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = text[line_start..offset].chars().count() as u32 + 1;
    (line, column)
}

/// How serious a finding is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Shown, never blocks.
    Info,
    /// Shown, never blocks; `quiver lint` still exits 0.
    Warn,
    /// Blocks the version (and fails lint) unless a waiver names it.
    Deny,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Deny => "deny",
        })
    }
}

/// An error in a TOML document (manifest or policy), with where and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{location}: {message}{}", hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
pub struct ConfigError {
    /// Where the problem is.
    pub location: Location,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ConfigError {
    /// A new error.
    pub fn new(location: Location, message: impl Into<String>, hint: Option<String>) -> Self {
        ConfigError {
            location,
            message: message.into(),
            hint,
        }
    }

    /// Converts a `toml` deserialization error into one that names file:line:column and,
    /// for unknown fields, the fields that are allowed.
    pub fn from_toml(file: &str, text: &str, err: &toml::de::Error) -> Self {
        let location = match err.span() {
            Some(span) => Location::of_offset(file, text, span.start),
            None => Location::file(file),
        };
        let message = err.message().trim().to_string();
        let hint = if message.contains("unknown field") {
            Some("check the spelling; the reference in docs/ lists every field".to_string())
        } else if message.contains("missing field") {
            Some("add the field; see docs/ for its meaning".to_string())
        } else {
            None
        };
        ConfigError {
            location,
            message,
            hint,
        }
    }
}

/// Finds the location of the first `key = ...` line whose value mentions `needle`, used to
/// point cross-reference errors at a line when the value itself was not spanned.
pub fn find_value_location(file: &str, text: &str, needle: &str) -> Location {
    let quoted = format!("\"{needle}\"");
    let quoted_single = format!("'{needle}'");
    for pat in [&quoted, &quoted_single] {
        if let Some(off) = text.find(pat.as_str()) {
            return Location::of_offset(file, text, off);
        }
    }
    Location::file(file)
}

/// Like [`find_value_location`], but looks for `needle` after the first quoted `anchor`
/// (the id of the item that holds it), so a value repeated in several items points at
/// the right one; falls back to the whole file.
pub fn find_value_location_after(file: &str, text: &str, anchor: &str, needle: &str) -> Location {
    let start = [format!("\"{anchor}\""), format!("'{anchor}'")]
        .iter()
        .find_map(|a| text.find(a.as_str()).map(|i| i + a.len()));
    if let Some(start) = start {
        for pat in [format!("\"{needle}\""), format!("'{needle}'")] {
            if let Some(off) = text[start..].find(pat.as_str()) {
                return Location::of_offset(file, text, start + off);
            }
        }
    }
    find_value_location(file, text, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a\nbc\nd";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 2));
        assert_eq!(line_col(t, 5), (3, 1));
        assert_eq!(line_col(t, 99), (3, 2));
    }

    #[test]
    fn a_repeated_value_is_found_in_the_item_that_holds_it() {
        let t = "id = \"ana\"\nroles = [\"x\"]\nid = \"ben\"\nroles = [\"x\"]\n";
        let at = |anchor| find_value_location_after("f", t, anchor, "x").line;
        assert_eq!(
            (at("ana"), at("ben"), at("nobody")),
            (Some(2), Some(4), Some(2))
        );
    }
}
