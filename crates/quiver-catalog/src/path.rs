//! Names that come from a catalog and end up on an endpoint's disk.
//!
//! A catalog is untrusted until verified, and even a signed one is only as careful as the
//! controller that built it. Every string the agent will turn into a file name is therefore a
//! newtype that cannot hold a value able to escape the cache or misbehave on Windows/macOS:
//! the check runs in the constructor and in `Deserialize`, so a hostile catalog does not even
//! parse.

use std::fmt;

/// Why a string is not a [`RelPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is the empty string.
    #[error("path is empty")]
    Empty,
    /// The path is longer than [`RelPath::MAX_LEN`] bytes.
    #[error("path is {len} bytes long; the limit is 1024")]
    TooLong {
        /// Length in bytes.
        len: usize,
    },
    /// The path is rooted (`/x`, `\x`, `//server`, `C:`…); only relative paths are allowed.
    #[error("path {0:?} is absolute; use a path relative to the script folder")]
    Absolute(String),
    /// The path contains a backslash; separators are always `/`.
    #[error("path {0:?} contains a backslash; use `/` as separator")]
    Backslash(String),
    /// A component is empty, `.` or `..`.
    #[error("path {0:?} has an empty, `.` or `..` component")]
    DotComponent(String),
    /// The path contains NUL, a control character or one of `<>:"|?*`.
    #[error("path {path:?} contains {ch:?}, which is not allowed in file names")]
    BadChar {
        /// The whole path.
        path: String,
        /// The offending character.
        ch: char,
    },
    /// A component is a Windows device name (`CON`, `nul.txt`, `COM1`…).
    #[error("path {0:?} uses a Windows reserved device name")]
    Reserved(String),
    /// A component ends with a space or a dot, which Windows silently strips.
    #[error("path {0:?} has a component ending in a space or dot")]
    TrailingDotOrSpace(String),
}

/// Why a string is not a [`ScriptName`] or a [`Sha256Hex`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not 1–128 of `A-Za-z0-9-_.`, starting with a dot, ending with a dot, or a Windows device name.
    #[error(
        "script name {0:?} is invalid: use 1-128 letters, digits, '-', '_' or '.', \
         not starting or ending with '.', and not a Windows device name"
    )]
    ScriptName(String),
    /// Not exactly 64 lowercase hex digits.
    #[error("{0:?} is not a sha256 digest (64 lowercase hex digits)")]
    Sha256(String),
}

/// Implements the shared plumbing of a validated string newtype.
macro_rules! validated_string {
    ($ty:ident, $err:ty, $check:path) => {
        impl $ty {
            /// Validates `s` and wraps it.
            pub fn new(s: &str) -> Result<Self, $err> {
                $check(s)?;
                Ok(Self(s.to_owned()))
            }
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::str::FromStr for $ty {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, $err> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = $err;
            fn try_from(s: String) -> Result<Self, $err> {
                $check(&s)?;
                Ok(Self(s))
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::try_from(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A relative, `/`-separated file path inside a script folder or the agent's cache, safe to
/// join onto a directory on Windows, macOS and Linux alike.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);
validated_string!(RelPath, PathError, check_rel_path);

impl RelPath {
    /// The longest accepted path, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// The components of the path, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

fn check_rel_path(s: &str) -> Result<(), PathError> {
    let owned = || s.to_owned();
    if s.is_empty() {
        return Err(PathError::Empty);
    }
    if s.len() > RelPath::MAX_LEN {
        return Err(PathError::TooLong { len: s.len() });
    }
    let b = s.as_bytes();
    // Rooted or drive-relative: `/x`, `\x`, `//server`, `C:x`, `C:\x`.
    if b[0] == b'/' || b[0] == b'\\' || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
    {
        return Err(PathError::Absolute(owned()));
    }
    if s.contains('\\') {
        return Err(PathError::Backslash(owned()));
    }
    if let Some(ch) = s
        .chars()
        .find(|c| c.is_control() || matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*'))
    {
        return Err(PathError::BadChar { path: owned(), ch });
    }
    for comp in s.split('/') {
        if comp.is_empty() || comp == "." || comp == ".." {
            return Err(PathError::DotComponent(owned()));
        }
        if comp.ends_with(' ') || comp.ends_with('.') {
            return Err(PathError::TrailingDotOrSpace(owned()));
        }
        if is_windows_device(comp) {
            return Err(PathError::Reserved(owned()));
        }
    }
    Ok(())
}

/// True for `CON`, `prn.txt`, `Com1.tar.gz`, `nul .x`…: Windows opens the device instead.
fn is_windows_device(comp: &str) -> bool {
    let stem = comp.split('.').next().unwrap_or(comp).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" => true,
        _ => {
            let b = upper.as_bytes();
            b.len() == 4
                && (upper.starts_with("COM") || upper.starts_with("LPT"))
                && (b'1'..=b'9').contains(&b[3])
        }
    }
}

/// The name of a script in the library; it becomes a folder name in the agent's cache.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScriptName(String);
validated_string!(ScriptName, NameError, check_script_name);

fn check_script_name(s: &str) -> Result<(), NameError> {
    let ok = (1..=128).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && !s.starts_with('.')
        // Windows strips a trailing dot and maps device names to devices: both would make the
        // cache folder something other than what its name says.
        && !s.ends_with('.')
        && !is_windows_device(s);
    if ok {
        Ok(())
    } else {
        Err(NameError::ScriptName(s.to_owned()))
    }
}

/// A SHA-256 digest as exactly 64 lowercase hex digits, the one spelling used everywhere so
/// that digests compare as strings and name blobs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Hex(String);
validated_string!(Sha256Hex, NameError, check_sha256);

fn check_sha256(s: &str) -> Result<(), NameError> {
    if s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(NameError::Sha256(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths() {
        for ok in [
            "a",
            "run.ps1",
            "lib/helpers.psm1",
            "a b/c-d_e.f",
            "conx.txt",
            "COM0",
            "x/.hidden",
        ] {
            assert!(RelPath::new(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "",
            "../x",
            "/etc/passwd",
            "C:\\x",
            "c:x",
            "a\\..\\b",
            "\\\\server\\s",
            "//server/s",
            "con.txt",
            "CON",
            "Lpt9",
            "aux .txt",
            "a/./b",
            "a//b",
            "a/",
            "a/..",
            "x.",
            "x ",
            "a\0b",
            "a\nb",
            "a<b",
            "a:b",
            "a|b",
            "a?b",
            "a*b",
            "a\"b",
            "a\u{7f}",
        ] {
            assert!(RelPath::new(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(RelPath::new(&"a".repeat(1025)).is_err());
        assert!(RelPath::new("a/".repeat(512).trim_end_matches('/')).is_ok());
    }

    #[test]
    fn script_names_and_digests() {
        for ok in ["a", "disk-cleanup", "Reset_Spooler.v2", &"x".repeat(128)] {
            assert!(ScriptName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".x",
            "x.",
            "a/b",
            "a b",
            "é",
            "nul",
            &"x".repeat(129),
        ] {
            assert!(ScriptName::new(bad).is_err(), "{bad:?}");
        }
        assert!(Sha256Hex::new(&"ab".repeat(32)).is_ok());
        assert!(Sha256Hex::new(&"AB".repeat(32)).is_err());
        assert!(Sha256Hex::new(&"ab".repeat(31)).is_err());
        let err = serde_json::from_str::<RelPath>("\"../x\"").unwrap_err();
        assert!(err.to_string().contains("`..`"), "{err}");
    }
}
