//! Writing a snapshot into the publish directory, so that any static web server (or the
//! controller itself) can serve it.
//!
//! Order matters, because readers never lock: blobs first (content-addressed, skipped when
//! present), then the catalog and its signature, then the timestamp and its signature last.
//! A reader therefore never sees a timestamp naming a catalog that is not there. Every file
//! is written to a temporary name in the same folder, fsynced and renamed over the old one,
//! and the folder is fsynced, so a crash leaves the old file or the new one, never half.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quiver_catalog::layout::{CATALOG_FILE, CATALOG_SIG_FILE, TIMESTAMP_FILE, TIMESTAMP_SIG_FILE};
use quiver_catalog::{Catalog, Limits, PublicKey, Sha256Hex, SigningKey, Timestamp, sha256_hex};
use time::OffsetDateTime;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Writing a file failed (disk full, permissions…).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(#[from] quiver_catalog::SignError),
    /// Blob bytes do not hash to the digest the catalog names.
    #[error("blob {expected}: content hashes to {actual}")]
    BlobMismatch {
        /// The digest in the catalog.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
}

/// A published snapshot held in memory for serving.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The catalog's serial.
    pub serial: u64,
    /// The parsed catalog (for run requests).
    pub catalog: Arc<Catalog>,
    /// `catalog.json`.
    pub catalog_bytes: Arc<[u8]>,
    /// `catalog.json.minisig`.
    pub catalog_sig: Arc<[u8]>,
    /// `timestamp.json`.
    pub timestamp_bytes: Arc<[u8]>,
    /// `timestamp.json.minisig`.
    pub timestamp_sig: Arc<[u8]>,
    /// When the timestamp was issued.
    pub issued_at: OffsetDateTime,
    /// When it expires.
    pub expires: OffsetDateTime,
}

impl Snapshot {
    /// The document for a file name of the layout, with its bytes.
    pub fn file(&self, name: &str) -> Option<&Arc<[u8]>> {
        match name {
            CATALOG_FILE => Some(&self.catalog_bytes),
            CATALOG_SIG_FILE => Some(&self.catalog_sig),
            TIMESTAMP_FILE => Some(&self.timestamp_bytes),
            TIMESTAMP_SIG_FILE => Some(&self.timestamp_sig),
            _ => None,
        }
    }
}

/// Writes snapshots into one directory with one key.
pub struct Publisher {
    dir: PathBuf,
    key: SigningKey,
    validity: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Publisher({})", self.dir.display())
    }
}

impl Publisher {
    /// A publisher for `dir` signing with `key`; timestamps are valid for `validity`.
    pub fn new(dir: PathBuf, key: SigningKey, validity: Duration) -> Publisher {
        Publisher { dir, key, validity }
    }

    /// The publish directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The public half of the signing key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest)
    }

    /// Whether a blob is already published.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Publishes a blob after checking its digest (durably, on its own).
    pub fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), PublishError> {
        self.write_blob_unsynced(digest, bytes)?;
        self.sync_blobs(&[digest.to_string()])
    }

    /// Writes a blob (temporary name, rename) without waiting for the disk; call
    /// [`Publisher::sync_blobs`] before publishing a catalog that names it. Writing a
    /// thousand blobs one fsync at a time takes seconds; one sync at the end takes one.
    pub fn write_blob_unsynced(&self, digest: &str, bytes: &[u8]) -> Result<(), PublishError> {
        let actual = sha256_hex(bytes);
        if actual.as_str() != digest {
            return Err(PublishError::BlobMismatch {
                expected: digest.into(),
                actual: actual.to_string(),
            });
        }
        write_files(&[(self.blob_path(digest), bytes)], false)
    }

    /// Makes blobs written with [`Publisher::write_blob_unsynced`] durable.
    pub fn sync_blobs(&self, digests: &[String]) -> Result<(), PublishError> {
        if digests.is_empty() {
            return Ok(());
        }
        let dir = self.dir.join("blobs").join("sha256");
        let io = |source| PublishError::Io {
            path: dir.clone(),
            source,
        };
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let d = File::open(&dir).map_err(io)?;
            // SAFETY: `d` is an open file descriptor for the duration of the call.
            if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 {
                return Ok(());
            }
        }
        for digest in digests {
            File::open(self.blob_path(digest))
                .and_then(|f| f.sync_all())
                .map_err(io)?;
        }
        File::open(&dir).and_then(|f| f.sync_all()).map_err(io)
    }

    /// Signs and writes the catalog, then a fresh timestamp naming it.
    pub fn publish(
        &self,
        catalog: Catalog,
        bytes: Vec<u8>,
        now: OffsetDateTime,
    ) -> Result<Snapshot, PublishError> {
        let serial = catalog.serial;
        let digest = sha256_hex(&bytes);
        let sig = self.key.sign(
            &bytes,
            &format!("quiver catalog serial={serial} sha256={digest}"),
        )?;
        write_files(
            &[
                (self.dir.join(CATALOG_FILE), &bytes),
                (self.dir.join(CATALOG_SIG_FILE), sig.as_bytes()),
            ],
            true,
        )?;
        let mut snap = Snapshot {
            serial,
            catalog: Arc::new(catalog),
            catalog_bytes: bytes.into(),
            catalog_sig: sig.into_bytes().into(),
            timestamp_bytes: Arc::from(&b""[..]),
            timestamp_sig: Arc::from(&b""[..]),
            issued_at: now,
            expires: now,
        };
        self.write_timestamp(&mut snap, now)?;
        Ok(snap)
    }

    /// Re-signs the timestamp of `snap` at `now` (the catalog is untouched).
    pub fn resign(&self, snap: &Snapshot, now: OffsetDateTime) -> Result<Snapshot, PublishError> {
        let mut next = snap.clone();
        self.write_timestamp(&mut next, now)?;
        Ok(next)
    }

    fn write_timestamp(
        &self,
        snap: &mut Snapshot,
        now: OffsetDateTime,
    ) -> Result<(), PublishError> {
        let ts = Timestamp::new(&snap.catalog_bytes, snap.serial, now, self.validity);
        let bytes = ts.to_canonical_bytes();
        let sig = self.key.sign(
            &bytes,
            &format!(
                "quiver timestamp serial={} expires={}",
                ts.serial,
                crate::audit::format_time(ts.expires)
            ),
        )?;
        write_files(
            &[
                (self.dir.join(TIMESTAMP_FILE), &bytes),
                (self.dir.join(TIMESTAMP_SIG_FILE), sig.as_bytes()),
            ],
            true,
        )?;
        snap.timestamp_bytes = bytes.into();
        snap.timestamp_sig = sig.into_bytes().into();
        snap.issued_at = ts.issued_at;
        snap.expires = ts.expires;
        Ok(())
    }

    /// Reads back what is in the publish directory, if it is a complete snapshot signed by
    /// our key whose timestamp names its catalog (after a restart this is what is served
    /// until the first reconcile). Anything else is ignored, not trusted.
    pub fn load_existing(&self) -> Option<Snapshot> {
        let read = |name: &str| std::fs::read(self.dir.join(name)).ok();
        let (cat, cat_sig, ts, ts_sig) = (
            read(CATALOG_FILE)?,
            read(CATALOG_SIG_FILE)?,
            read(TIMESTAMP_FILE)?,
            read(TIMESTAMP_SIG_FILE)?,
        );
        let pk = self.public_key();
        let cat_sig_text = String::from_utf8(cat_sig.clone()).ok()?;
        let ts_sig_text = String::from_utf8(ts_sig.clone()).ok()?;
        pk.verify(&cat, &cat_sig_text).ok()?;
        pk.verify(&ts, &ts_sig_text).ok()?;
        let limits = Limits::default();
        let timestamp = Timestamp::parse(&ts, limits.max_timestamp_bytes).ok()?;
        let catalog = Catalog::parse(&cat, &limits).ok()?;
        if timestamp.catalog_sha256 != sha256_hex(&cat) || timestamp.serial != catalog.serial {
            return None;
        }
        Some(Snapshot {
            serial: catalog.serial,
            catalog: Arc::new(catalog),
            catalog_bytes: cat.into(),
            catalog_sig: cat_sig.into(),
            timestamp_bytes: ts.into(),
            timestamp_sig: ts_sig.into(),
            issued_at: timestamp.issued_at,
            expires: timestamp.expires,
        })
    }
}

/// Checks that a string is a digest before it becomes a file name.
pub fn valid_digest(s: &str) -> bool {
    Sha256Hex::new(s).is_ok()
}

/// Writes `bytes` to `path` via a temporary file in the same folder, fsync and rename, then
/// fsyncs the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    write_files(&[(path.to_path_buf(), bytes)], true)
}

/// Writes files through temporary names in their folders and renames them in order. With
/// `durable`, every file is fsynced before any rename and the folders after, so the new
/// names never point at unwritten data.
fn write_files(files: &[(PathBuf, &[u8])], durable: bool) -> Result<(), PublishError> {
    let mut temps = Vec::with_capacity(files.len());
    let cleanup = |temps: &[(PathBuf, &PathBuf)]| {
        for (t, _) in temps {
            let _ = std::fs::remove_file(t);
        }
    };
    for (path, bytes) in files {
        let io = |source| PublishError::Io {
            path: path.clone(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let result = (|| {
            std::fs::create_dir_all(dir)?;
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            if durable {
                f.sync_all()?;
            }
            drop(f);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            cleanup(&temps);
            return Err(io(e));
        }
        temps.push((tmp, path));
    }
    for (i, (tmp, path)) in temps.iter().enumerate() {
        if let Err(source) = std::fs::rename(tmp, path) {
            cleanup(&temps[i..]);
            return Err(PublishError::Io {
                path: (*path).clone(),
                source,
            });
        }
    }
    if durable {
        let mut dirs: Vec<&Path> = files
            .iter()
            .map(|(p, _)| p.parent().unwrap_or(Path::new(".")))
            .collect();
        dirs.dedup();
        for dir in dirs {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| PublishError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_catalog::{KeyPair, verify_catalog, verify_timestamp};

    #[test]
    fn a_published_snapshot_verifies_and_reloads() {
        let dir = tempfile::tempdir().expect("tmp");
        let keys = KeyPair::generate().expect("keys");
        let public = keys.public.clone();
        let p = Publisher::new(dir.path().into(), keys.signing, Duration::from_secs(3600));
        let cat = Catalog::new(4, "c".into(), "p".into(), vec![], vec![]);
        let bytes = cat.to_canonical_bytes();
        let now = OffsetDateTime::now_utc();
        let snap = p.publish(cat, bytes, now).expect("publish");
        let limits = Limits::default();
        let ts_sig = String::from_utf8(snap.timestamp_sig.to_vec()).expect("utf8");
        let ts = verify_timestamp(
            &public,
            &snap.timestamp_bytes,
            &ts_sig,
            now,
            Some(3),
            &limits,
        )
        .expect("timestamp");
        let cat_sig = String::from_utf8(snap.catalog_sig.to_vec()).expect("utf8");
        verify_catalog(&public, &snap.catalog_bytes, &cat_sig, &ts, &limits).expect("catalog");
        let again = p.load_existing().expect("reload");
        assert_eq!(again.serial, 4);
        assert_eq!(again.catalog_bytes, snap.catalog_bytes);

        assert!(p.write_blob(&"00".repeat(32), b"x").is_err());
        let d = sha256_hex(b"x");
        p.write_blob(d.as_str(), b"x").expect("blob");
        assert!(p.has_blob(d.as_str()));
        // No temporary files left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
