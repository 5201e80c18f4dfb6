//! Where a snapshot's files live, relative to the snapshot root.
//!
//! Any static file server can serve a snapshot, so the layout is a contract of its own: these
//! names are what the controller writes and what the agent fetches. Blobs are named by their
//! digest, so they never change once written and can be cached forever.

use sha2::{Digest, Sha256};

use crate::path::Sha256Hex;

/// The catalog document.
pub const CATALOG_FILE: &str = "catalog.json";
/// The catalog's minisign signature.
pub const CATALOG_SIG_FILE: &str = "catalog.json.minisig";
/// The timestamp document.
pub const TIMESTAMP_FILE: &str = "timestamp.json";
/// The timestamp's minisign signature.
pub const TIMESTAMP_SIG_FILE: &str = "timestamp.json.minisig";
/// Folder of content-addressed blobs.
pub const BLOB_DIR: &str = "blobs/sha256";

/// `blobs/sha256/<hex>`: where the blob with this digest is published.
pub fn blob_rel_path(digest: &Sha256Hex) -> String {
    format!("{BLOB_DIR}/{digest}")
}

/// The SHA-256 of `bytes`, spelled the one way quiver spells digests.
pub fn sha256_hex(bytes: &[u8]) -> Sha256Hex {
    Sha256Hex::new(&hex::encode(Sha256::digest(bytes)))
        .expect("hex::encode gives 64 lowercase digits")
}
