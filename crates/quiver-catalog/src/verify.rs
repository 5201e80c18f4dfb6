//! The checks an endpoint agent runs on a snapshot before it believes any of it.
//!
//! Order matters: size caps come before anything reads the bytes, signatures before parsing,
//! and each check is commented with the property it enforces, so a reviewer can match this
//! file against the threat list in the design (rollback, freeze, mix-and-match, tampered
//! blobs, oversized documents). Every failure is a [`VerifyError`] naming that property;
//! [`VerifyError::reason_code`] is the stable label for check-ins and metrics.

use time::OffsetDateTime;

use crate::catalog::{Catalog, FileEntry};
use crate::layout::sha256_hex;
use crate::path::{RelPath, Sha256Hex};
use crate::sign::PublicKey;
use crate::timestamp::Timestamp;

/// Size caps on everything an endpoint downloads, so a hostile or broken server cannot make
/// it exhaust memory or disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Catalog document. Default 32 MiB: thousands of scripts with many files fit easily.
    pub max_catalog_bytes: u64,
    /// Timestamp document. Default 64 KiB: it is a few hundred bytes.
    pub max_timestamp_bytes: u64,
    /// One script file. Default 256 MiB: scripts, not installers.
    pub max_blob_bytes: u64,
    /// Files across the whole catalog. Default 100 000.
    pub max_files: u64,
    /// Summed size of all files in the catalog. Default 4 GiB.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_catalog_bytes: 32 << 20,
            max_timestamp_bytes: 64 << 10,
            max_blob_bytes: 256 << 20,
            max_files: 100_000,
            max_total_bytes: 4 << 30,
        }
    }
}

/// A snapshot (or part of one) that must not be trusted, named by the property it violates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not signed by the pinned key, or altered after signing.
    #[error("{what}: bad signature: {reason}")]
    BadSignature {
        /// Which document.
        what: &'static str,
        /// What minisign said.
        reason: String,
    },
    /// The offered serial is lower than the one already applied.
    #[error("rollback: offered serial {offered} is older than applied serial {applied}")]
    Rollback {
        /// Serial the agent has applied.
        applied: u64,
        /// Serial offered now.
        offered: u64,
    },
    /// The timestamp has expired: the controller (or mirror) is frozen.
    #[error("freeze: timestamp expired at {expires}, now is {now}")]
    Expired {
        /// When it expired.
        expires: OffsetDateTime,
        /// The agent's clock.
        now: OffsetDateTime,
    },
    /// The catalog is not the one the timestamp names.
    #[error("mix-and-match: catalog {what} is {found}, the timestamp names {expected}")]
    MixAndMatch {
        /// `"size"` or `"sha256"`.
        what: &'static str,
        /// Value from the timestamp.
        expected: String,
        /// Value of the bytes received.
        found: String,
    },
    /// The catalog's serial differs from the timestamp's.
    #[error("mix-and-match: catalog serial {catalog} differs from timestamp serial {timestamp}")]
    SerialMismatch {
        /// Serial in the timestamp.
        timestamp: u64,
        /// Serial in the catalog.
        catalog: u64,
    },
    /// Over a size cap; refused before parsing.
    #[error("{what} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Which document.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Signed, but not a valid document (or an unreadable key).
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// Which document.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A blob's size differs from its catalog entry.
    #[error("blob for {path}: {found} bytes, catalog says {expected}")]
    BlobSize {
        /// The file it was fetched for.
        path: RelPath,
        /// Size in the catalog.
        expected: u64,
        /// Size received.
        found: u64,
    },
    /// A blob's digest differs from its catalog entry.
    #[error("blob for {path}: sha256 {found}, catalog says {expected}")]
    BlobDigest {
        /// The file it was fetched for.
        path: RelPath,
        /// Digest in the catalog.
        expected: Sha256Hex,
        /// Digest of the bytes received.
        found: Sha256Hex,
    },
}

impl VerifyError {
    /// A short stable label for check-ins and metrics.
    pub fn reason_code(&self) -> &'static str {
        match self {
            VerifyError::BadSignature { .. } => "bad-signature",
            VerifyError::Rollback { .. } => "rollback",
            VerifyError::Expired { .. } => "freeze",
            VerifyError::MixAndMatch { .. } => "mix-and-match",
            VerifyError::SerialMismatch { .. } => "serial-mismatch",
            VerifyError::TooLarge { .. } => "too-large",
            VerifyError::Malformed { .. } => "malformed",
            VerifyError::BlobSize { .. } => "blob-size",
            VerifyError::BlobDigest { .. } => "blob-digest",
        }
    }
}

fn cap(what: &'static str, size: usize, limit: u64) -> Result<(), VerifyError> {
    if size as u64 > limit {
        return Err(VerifyError::TooLarge {
            what,
            size: size as u64,
            limit,
        });
    }
    Ok(())
}

/// Verifies the timestamp: the entry point of every sync.
pub fn verify_timestamp(
    pk: &PublicKey,
    ts_bytes: &[u8],
    ts_sig: &str,
    now: OffsetDateTime,
    applied_serial: Option<u64>,
    limits: &Limits,
) -> Result<Timestamp, VerifyError> {
    // Endless data: refuse oversize bytes before hashing or parsing them.
    cap("timestamp", ts_bytes.len(), limits.max_timestamp_bytes)?;
    // Authenticity: only the pinned controller key may speak.
    pk.verify_as("timestamp", ts_bytes, ts_sig)?;
    let ts = Timestamp::parse(ts_bytes, limits.max_timestamp_bytes).map_err(|e| {
        VerifyError::Malformed {
            what: "timestamp",
            reason: e.to_string(),
        }
    })?;
    // Rollback: never go back to an older (possibly vulnerable) snapshot.
    if let Some(applied) = applied_serial.filter(|&a| ts.serial < a) {
        return Err(VerifyError::Rollback {
            applied,
            offered: ts.serial,
        });
    }
    // Freeze: an expired timestamp means nobody has vouched for this snapshot lately.
    if ts.is_expired(now) {
        return Err(VerifyError::Expired {
            expires: ts.expires,
            now,
        });
    }
    Ok(ts)
}

/// Verifies the catalog against an already verified timestamp.
pub fn verify_catalog(
    pk: &PublicKey,
    cat_bytes: &[u8],
    cat_sig: &str,
    ts: &Timestamp,
    limits: &Limits,
) -> Result<Catalog, VerifyError> {
    // Endless data: the cap, and the exact size the timestamp promised.
    cap("catalog", cat_bytes.len(), limits.max_catalog_bytes)?;
    if cat_bytes.len() as u64 != ts.catalog_size {
        return Err(VerifyError::MixAndMatch {
            what: "size",
            expected: ts.catalog_size.to_string(),
            found: cat_bytes.len().to_string(),
        });
    }
    // Mix-and-match: the catalog must be exactly the one the timestamp names.
    let digest = sha256_hex(cat_bytes);
    if digest != ts.catalog_sha256 {
        return Err(VerifyError::MixAndMatch {
            what: "sha256",
            expected: ts.catalog_sha256.to_string(),
            found: digest.to_string(),
        });
    }
    // Authenticity: signed by the pinned key (the digest alone is only as good as the timestamp).
    pk.verify_as("catalog", cat_bytes, cat_sig)?;
    // Path escapes, unknown fields, inconsistent entries: refused by the strict parser.
    let catalog = Catalog::parse(cat_bytes, limits).map_err(|e| VerifyError::Malformed {
        what: "catalog",
        reason: e.to_string(),
    })?;
    // Mix-and-match: the serial inside must be the one the timestamp vouches for.
    if catalog.serial != ts.serial {
        return Err(VerifyError::SerialMismatch {
            timestamp: ts.serial,
            catalog: catalog.serial,
        });
    }
    Ok(catalog)
}

/// Verifies a downloaded blob against its catalog entry.
pub fn verify_blob(bytes: &[u8], file: &FileEntry) -> Result<(), VerifyError> {
    // Endless data / truncation: the size is cheap, so check it first.
    if bytes.len() as u64 != file.size {
        return Err(VerifyError::BlobSize {
            path: file.path.clone(),
            expected: file.size,
            found: bytes.len() as u64,
        });
    }
    // Integrity: the content is what the signed catalog says.
    let digest = sha256_hex(bytes);
    if digest != file.sha256 {
        return Err(VerifyError::BlobDigest {
            path: file.path.clone(),
            expected: file.sha256.clone(),
            found: digest,
        });
    }
    Ok(())
}
