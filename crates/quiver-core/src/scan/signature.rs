//! Executables: native code cannot be reviewed in a pull request, so it must carry a
//! minisign signature (`<file>.minisig` beside it) by a publisher key pinned in policy.
//!
//! The review then vouches for "this exact binary, as signed by that publisher", and a
//! binary swapped in a later commit without a fresh signature is refused.

use crate::diag::{ConfigError, Location};
use crate::policy::PublisherKey;
use minisign_verify::{Error as VerifyError, PublicKey, Signature};

/// Extensions of files that hold native code.
const EXECUTABLE_EXTENSIONS: &[&str] = &[
    "exe", "dll", "sys", "bin", "so", "dylib", "msi", "scr", "ocx", "cpl", "com",
];

/// A publisher key decoded once when the scanner is built.
pub(crate) struct PinnedKey {
    pub id: String,
    pub key: PublicKey,
}

/// Decodes the policy's publisher keys (`RW…` base64, or a whole `minisign.pub` file).
pub(crate) fn decode_keys(
    keys: &[PublisherKey],
    policy_file: &str,
) -> Result<Vec<PinnedKey>, Vec<ConfigError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for k in keys {
        let text = k.key.trim();
        let decoded = if text.contains('\n') {
            PublicKey::decode(text)
        } else {
            PublicKey::from_base64(text)
        };
        match decoded {
            Ok(key) => out.push(PinnedKey {
                id: k.id.clone(),
                key,
            }),
            Err(e) => errors.push(ConfigError::new(
                Location::file(policy_file),
                format!("publisher key `{}` is not a minisign public key: {e}", k.id),
                Some(
                    "paste the second line of the publisher's minisign.pub (it starts with RW)"
                        .into(),
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Whether a file holds native code: by extension, or by the magic number of an ELF,
/// Mach-O or PE (Windows) image.
pub(crate) fn is_executable(path: &str, bytes: &[u8]) -> bool {
    let lower = path.to_ascii_lowercase();
    if let Some((_, ext)) = lower.rsplit_once('.')
        && EXECUTABLE_EXTENSIONS.contains(&ext)
    {
        return true;
    }
    magic(bytes).is_some()
}

/// The kind of executable image `bytes` starts with.
pub(crate) fn magic(bytes: &[u8]) -> Option<&'static str> {
    let head: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    match head {
        [0x7F, b'E', b'L', b'F'] => Some("ELF"),
        [0xFE, 0xED, 0xFA, 0xCE | 0xCF] | [0xCE | 0xCF, 0xFA, 0xED, 0xFE] => Some("Mach-O"),
        [0xCA, 0xFE, 0xBA, 0xBE] => Some("Mach-O universal"),
        [b'M', b'Z', ..] => {
            // A PE image: the DOS header's e_lfanew points at "PE\0\0".
            let at = u32::from_le_bytes(bytes.get(0x3C..0x40)?.try_into().ok()?) as usize;
            (bytes.get(at..at.checked_add(4)?)? == b"PE\0\0").then_some("PE")
        }
        _ => None,
    }
}

/// The outcome of checking one executable's signature.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Signed by this pinned key; carries the signature's trusted comment.
    Trusted { key: String, comment: String },
    /// No `.minisig` beside it.
    Missing,
    /// Signed, but by no pinned key.
    Untrusted,
    /// The signature is malformed, or a pinned key's signature does not verify.
    Invalid(String),
}

/// Verifies `bytes` against the signature text (if any) and the pinned keys.
pub(crate) fn verify(bytes: &[u8], signature: Option<&[u8]>, keys: &[PinnedKey]) -> Verdict {
    let Some(sig_bytes) = signature else {
        return Verdict::Missing;
    };
    let Ok(text) = std::str::from_utf8(sig_bytes) else {
        return Verdict::Invalid("the .minisig file is not text".into());
    };
    let sig = match Signature::decode(text) {
        Ok(s) => s,
        Err(e) => return Verdict::Invalid(format!("the .minisig file is malformed ({e})")),
    };
    for k in keys {
        match k.key.verify(bytes, &sig, false) {
            Ok(()) => {
                return Verdict::Trusted {
                    key: k.id.clone(),
                    comment: sig.trusted_comment().to_string(),
                };
            }
            Err(VerifyError::UnexpectedKeyId) => continue,
            Err(VerifyError::UnexpectedAlgorithm) => {
                return Verdict::Invalid(format!(
                    "signed by pinned key `{}` in legacy (non-prehashed) mode, which is refused",
                    k.id
                ));
            }
            Err(e) => {
                return Verdict::Invalid(format!(
                    "the signature by pinned key `{}` does not verify ({e}); the file or its signature was changed",
                    k.id
                ));
            }
        }
    }
    Verdict::Untrusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_images_by_magic_and_extension() {
        assert_eq!(magic(b"\x7fELF\x02\x01"), Some("ELF"));
        assert_eq!(magic(b"\xcf\xfa\xed\xfe"), Some("Mach-O"));
        let mut pe = vec![0u8; 0x80];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3C] = 0x40;
        pe[0x40..0x44].copy_from_slice(b"PE\0\0");
        assert_eq!(magic(&pe), Some("PE"));
        assert_eq!(magic(b"MZ is just text here"), None);
        assert_eq!(magic(b"#!/bin/sh"), None);
        assert!(is_executable("tools/x.EXE", b""));
        assert!(!is_executable("run.sh", b"#!/bin/sh\n"));
    }
}
