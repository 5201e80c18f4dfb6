//! Unified diffs between two contents of a script, per file, for people.
//!
//! Text is decoded for display only (UTF-8 with or without BOM, UTF-16 LE/BE); carriage
//! returns are shown as `␍` so a line-ending change is visible. Binary files are
//! summarised by size and sha256.

use crate::Error;
use crate::repo::{FileRef, Repo};
use serde::Serialize;
use sha2::{Digest, Sha256};
use similar::TextDiff;
use std::collections::BTreeMap;

/// How a file differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// Only in the new content.
    Added,
    /// Only in the old content.
    Removed,
    /// In both, different bytes or mode.
    Modified,
    /// Identical.
    Unchanged,
}

/// One side of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// sha256 of the exact bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// git mode, octal.
    pub mode: String,
    /// How it was decoded (`utf-8`, `utf-8-bom`, `utf-16le`, `utf-16be`, `binary`), plus
    /// `+crlf` when it has CRLF line endings.
    pub encoding: String,
}

/// The diff of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    /// Path relative to the script folder.
    pub path: String,
    /// How it differs.
    pub status: FileStatus,
    /// Old side.
    pub old: Option<Side>,
    /// New side.
    pub new: Option<Side>,
    /// Unified diff of the decoded text (`None` for binaries and unchanged files).
    pub unified: Option<String>,
    /// Summary for binaries.
    pub note: Option<String>,
}

/// Decodes bytes for display: the text and its encoding, or `None` for binary data.
pub fn decode_text(bytes: &[u8]) -> Option<(String, &'static str)> {
    let utf16 = |b: &[u8], le: bool| -> Option<String> {
        if !b.len().is_multiple_of(2) {
            return None;
        }
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&units).ok()
    };
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return std::str::from_utf8(rest)
            .ok()
            .map(|s| (s.to_string(), "utf-8-bom"));
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, true).map(|s| (s, "utf-16le"));
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, false).map(|s| (s, "utf-16be"));
    }
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => Some((s.to_string(), "utf-8")),
        _ => None,
    }
}

fn side(bytes: &[u8], mode: u32) -> (Side, Option<String>) {
    let decoded = decode_text(bytes);
    let encoding = match &decoded {
        Some((t, e)) if t.contains("\r\n") => format!("{e}+crlf"),
        Some((_, e)) => e.to_string(),
        None => "binary".to_string(),
    };
    (
        Side {
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
            mode: format!("{mode:06o}"),
            encoding,
        },
        decoded.map(|(t, _)| t.replace('\r', "␍")),
    )
}

/// Diffs two contents of a script (files relative to the script folder). `labels` name the
/// two sides in the unified headers (e.g. `v3`, `head`).
pub fn diff_files(
    repo: &Repo,
    old: &[FileRef],
    new: &[FileRef],
    labels: (&str, &str),
) -> Result<Vec<FileDiff>, Error> {
    let mut paths: BTreeMap<&str, (Option<&FileRef>, Option<&FileRef>)> = BTreeMap::new();
    for f in old {
        paths.entry(&f.path).or_default().0 = Some(f);
    }
    for f in new {
        paths.entry(&f.path).or_default().1 = Some(f);
    }
    let read = |f: &FileRef| -> Result<Vec<u8>, Error> {
        if f.mode == crate::repo::MODE_GITLINK {
            Ok(format!("Subproject commit {}\n", f.oid).into_bytes())
        } else {
            repo.blob(&f.oid)
        }
    };
    let mut out = Vec::new();
    for (path, (o, n)) in paths {
        let ob = o.map(read).transpose()?;
        let nb = n.map(read).transpose()?;
        let os = o.zip(ob.as_ref()).map(|(f, b)| side(b, f.mode));
        let ns = n.zip(nb.as_ref()).map(|(f, b)| side(b, f.mode));
        let status = match (&os, &ns) {
            (None, Some(_)) => FileStatus::Added,
            (Some(_), None) => FileStatus::Removed,
            (Some((a, _)), Some((b, _))) if a.sha256 == b.sha256 && a.mode == b.mode => {
                FileStatus::Unchanged
            }
            _ => FileStatus::Modified,
        };
        let (old_side, old_text) = match os {
            Some((s, t)) => (Some(s), t),
            None => (None, Some(String::new())),
        };
        let (new_side, new_text) = match ns {
            Some((s, t)) => (Some(s), t),
            None => (None, Some(String::new())),
        };
        let mut unified = None;
        let mut note = None;
        if status != FileStatus::Unchanged {
            match (old_text, new_text) {
                (Some(a), Some(b)) => {
                    let d = TextDiff::from_lines(&a, &b);
                    let text = d
                        .unified_diff()
                        .context_radius(3)
                        .header(
                            &format!("{}/{path}", labels.0),
                            &format!("{}/{path}", labels.1),
                        )
                        .to_string();
                    unified = Some(text);
                    if let (Some(a), Some(b)) = (&old_side, &new_side)
                        && a.mode != b.mode
                    {
                        note = Some(format!("mode {} → {}", a.mode, b.mode));
                    }
                }
                _ => {
                    let fmt = |s: &Option<Side>| match s {
                        Some(s) => format!("{} bytes, sha256 {}", s.size, s.sha256),
                        None => "absent".to_string(),
                    };
                    note = Some(format!("binary: {} → {}", fmt(&old_side), fmt(&new_side)));
                }
            }
        }
        out.push(FileDiff {
            path: path.to_string(),
            status,
            old: old_side,
            new: new_side,
            unified,
            note,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_boms_and_utf16() {
        assert_eq!(decode_text(b"hi\n"), Some(("hi\n".into(), "utf-8")));
        assert_eq!(
            decode_text(b"\xEF\xBB\xBFhi"),
            Some(("hi".into(), "utf-8-bom"))
        );
        assert_eq!(
            decode_text(b"\xFF\xFEh\0i\0"),
            Some(("hi".into(), "utf-16le"))
        );
        assert_eq!(
            decode_text(b"\xFE\xFF\0h\0i"),
            Some(("hi".into(), "utf-16be"))
        );
        assert_eq!(decode_text(b"\0\x01\x02"), None);
        assert_eq!(decode_text(b"\xC3\x28"), None);
    }
}
