//! The timestamp: a small signed document naming the current catalog (serial, digest, size)
//! with an expiry.
//!
//! The catalog only changes when the library does, but the controller re-signs the timestamp
//! on a schedule. An endpoint that sees an expired timestamp knows it is talking to a frozen
//! controller (or a mirror replaying old files), and the digest in it ties the timestamp to
//! exactly one catalog, which defeats mix-and-match of old and new files.

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, UtcOffset};

use crate::catalog::{CatalogError, canonical_json, check_header, parse_document};
use crate::layout::sha256_hex;
use crate::path::Sha256Hex;

/// The signed pointer to the current catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timestamp {
    /// Always `"timestamp"`, so it cannot be passed off as a catalog.
    pub r#type: String,
    /// Always 1.
    pub format: u32,
    /// The serial of the catalog it names.
    pub serial: u64,
    /// Digest of the catalog's published bytes.
    pub catalog_sha256: Sha256Hex,
    /// Size of the catalog's published bytes.
    pub catalog_size: u64,
    /// When it was signed.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// After this, endpoints stop trusting it (freeze).
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
}

impl Timestamp {
    /// The `type` of every timestamp.
    pub const TYPE: &'static str = "timestamp";

    /// A timestamp for `catalog_bytes` (the canonical bytes as published), issued `now` and
    /// valid for `validity`. Times are kept in UTC at whole seconds so that two replicas
    /// signing in the same second publish the same bytes.
    ///
    /// Panics if `now + validity` is past the year 9999.
    pub fn new(
        catalog_bytes: &[u8],
        serial: u64,
        now: OffsetDateTime,
        validity: std::time::Duration,
    ) -> Timestamp {
        let issued_at = now
            .to_offset(UtcOffset::UTC)
            .replace_nanosecond(0)
            .expect("0 is a valid nanosecond");
        let expires = issued_at + time::Duration::seconds(validity.as_secs() as i64);
        Timestamp {
            r#type: Self::TYPE.into(),
            format: 1,
            serial,
            catalog_sha256: sha256_hex(catalog_bytes),
            catalog_size: catalog_bytes.len() as u64,
            issued_at,
            expires,
        }
    }

    /// The bytes to sign and publish (compact JSON and a newline, like the catalog).
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        canonical_json(self)
    }

    /// Parses untrusted timestamp bytes, refusing anything over `max_bytes` before parsing.
    pub fn parse(bytes: &[u8], max_bytes: u64) -> Result<Timestamp, CatalogError> {
        let ts: Timestamp = parse_document(bytes, max_bytes)?;
        check_header(&ts.r#type, Self::TYPE, ts.format)?;
        Ok(ts)
    }

    /// Whether the timestamp has expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now > self.expires
    }
}
