//! The state directory: where the agent keeps its enrollment, its verified snapshots and the
//! content-addressed blob cache, and the two small pointer files that tie them together.
//!
//! ```text
//! <state>/
//!   agent.json            enrollment: server, ids, platform, labels, token, pinned key (0600)
//!   current.json          {"serial":N,"dir":"snapshots/N"}: the snapshot in use
//!   timestamp-cache.json  last verified timestamp + signature + ETag (conditional GETs)
//!   problems.json         problems not yet reported in a check-in
//!   lock                  held while syncing (exclusive) or resolving a run (shared)
//!   snapshots/N/          one verified snapshot: <script>/<files>, and .quiver/ with the
//!                         signed catalog and timestamp it was built from
//!   blobs/<sha256>        verified file contents, shared by snapshots
//!   tmp/                  downloads and staging; emptied at every start
//! ```
//!
//! Architecture invariant: `current.json` only ever names a snapshot directory that was
//! complete and flushed to disk before the pointer was written.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use quiver_catalog::{Platform, PublicKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;

/// The enrollment, stored as `agent.json` (mode 0600: it holds the agent token).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentConfig {
    /// Controller base URL, e.g. `https://quiver.example.com`.
    pub server: String,
    /// Where the signed snapshot files are fetched from; defaults to `<server>/v1/`. Any
    /// static web server or CDN holding the publish directory will do.
    #[serde(default)]
    pub snapshot_url: Option<String>,
    /// The id the controller gave this agent (used in API paths).
    pub agent_id: String,
    /// The device id given at enrollment.
    pub device_id: String,
    /// This device's platform.
    pub platform: Platform,
    /// Labels used for group targeting.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Bearer token for the controller API.
    pub agent_token: String,
    /// The pinned controller public key (minisign base64 line).
    pub public_key: String,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field("snapshot_url", &self.snapshot_url)
            .field("agent_id", &self.agent_id)
            .field("device_id", &self.device_id)
            .field("platform", &self.platform)
            .field("labels", &self.labels)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    /// The pinned key, decoded.
    pub fn key(&self) -> Result<PublicKey> {
        PublicKey::decode(&self.public_key).map_err(|e| Error::invalid("agent.json public_key", e))
    }

    /// Base URL of the controller API (`<server>/v1/`), with a trailing slash.
    pub fn api_base(&self) -> String {
        format!("{}/v1/", self.server.trim_end_matches('/'))
    }

    /// Base URL of the snapshot files, with a trailing slash.
    pub fn snapshot_base(&self) -> String {
        match &self.snapshot_url {
            Some(u) => format!("{}/", u.trim_end_matches('/')),
            None => self.api_base(),
        }
    }
}

/// Checks an id that ends up in URL paths and file names (device, agent and run ids).
pub fn check_id(what: &str, id: &str) -> Result<()> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            format!("{id:?} must be 1-128 of A-Z a-z 0-9 - _ . and not start with '.'"),
        ))
    }
}

/// The pointer to the snapshot in use (`current.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    /// Serial of the snapshot.
    pub serial: u64,
    /// `snapshots/<name>`, relative to the state directory.
    pub dir: String,
}

impl Pointer {
    /// The snapshot directory's name inside `snapshots/`, refusing anything that is not a
    /// plain name there (the pointer is a file on disk, so it is checked like input).
    pub fn dir_name(&self) -> Result<&str> {
        let name = self
            .dir
            .strip_prefix("snapshots/")
            .filter(|n| is_snapshot_dir_name(n))
            .ok_or_else(|| Error::invalid("current.json", format!("bad dir {:?}", self.dir)))?;
        Ok(name)
    }
}

/// `N` or `N.k`: the names the agent gives snapshot directories.
pub fn is_snapshot_dir_name(name: &str) -> bool {
    parse_snapshot_dir_name(name).is_some()
}

/// `(serial, k)` of a snapshot directory name (`N` is `(N, 0)`).
pub fn parse_snapshot_dir_name(name: &str) -> Option<(u64, u32)> {
    let (serial, k) = match name.split_once('.') {
        Some((s, k)) => (s, k.parse::<u32>().ok().filter(|k| *k > 0)?),
        None => (name, 0),
    };
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Reject leading zeros so that one serial has one spelling.
    if serial.len() > 1 && serial.starts_with('0') {
        return None;
    }
    Some((serial.parse().ok()?, k))
}

/// Paths inside the state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// The lock on the state directory; released when dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateDir {
    /// A state directory at `root` (nothing is created yet). A relative path is made
    /// absolute now: scripts run in their own working directory and must still find their
    /// files.
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        let root = root.into();
        StateDir {
            root: std::path::absolute(&root).unwrap_or(root),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `agent.json`.
    pub fn agent_file(&self) -> PathBuf {
        self.root.join("agent.json")
    }
    /// `current.json`.
    pub fn current_file(&self) -> PathBuf {
        self.root.join("current.json")
    }
    /// `timestamp-cache.json`.
    pub fn timestamp_cache_file(&self) -> PathBuf {
        self.root.join("timestamp-cache.json")
    }
    /// `problems.json`.
    pub fn problems_file(&self) -> PathBuf {
        self.root.join("problems.json")
    }
    /// `snapshots/`.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    /// `blobs/`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }
    /// `tmp/`.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// `lock`.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Creates the directory layout (private on unix) if missing. Creates nothing when it is
    /// already there, so a warm sync writes no file.
    pub fn ensure_layout(&self) -> Result<()> {
        fsutil::ensure_private_dir(&self.root)?;
        for d in [self.snapshots_dir(), self.blobs_dir(), self.tmp_dir()] {
            fsutil::ensure_private_dir(&d)?;
        }
        Ok(())
    }

    /// Takes the exclusive lock (waiting for other agents' syncs and runs to let go).
    pub fn lock_exclusive(&self) -> Result<StateLock> {
        let f = self.open_lock()?;
        f.lock().map_err(Error::io(self.lock_file()))?;
        Ok(StateLock { _file: f })
    }

    /// Takes a shared lock (many runs may resolve scripts at once; a sync waits).
    pub fn lock_shared(&self) -> Result<StateLock> {
        let f = self.open_lock()?;
        f.lock_shared().map_err(Error::io(self.lock_file()))?;
        Ok(StateLock { _file: f })
    }

    fn open_lock(&self) -> Result<File> {
        let path = self.lock_file();
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io(path))
    }

    /// Reads `agent.json`.
    pub fn load_config(&self) -> Result<AgentConfig> {
        let path = self.agent_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotEnrolled(path));
            }
            Err(e) => return Err(Error::io(path)(e)),
        };
        let cfg: AgentConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(path.display().to_string(), e))?;
        check_id("agent.json agent_id", &cfg.agent_id)?;
        Ok(cfg)
    }

    /// Writes `agent.json` atomically, mode 0600 from creation.
    pub fn save_config(&self, cfg: &AgentConfig) -> Result<()> {
        self.ensure_layout()?;
        let mut bytes = serde_json::to_vec_pretty(cfg).map_err(|e| Error::invalid("agent", e))?;
        bytes.push(b'\n');
        fsutil::write_atomic(&self.agent_file(), &bytes, 0o600)
    }

    /// Reads `current.json`; `None` before the first successful sync.
    pub fn load_pointer(&self) -> Result<Option<Pointer>> {
        let path = self.current_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path)(e)),
        };
        let p: Pointer = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(path.display().to_string(), e))?;
        p.dir_name()?;
        Ok(Some(p))
    }

    /// Switches `current.json` atomically (temp file, fsync, rename, fsync of the directory).
    pub fn save_pointer(&self, p: &Pointer) -> Result<()> {
        let mut bytes = serde_json::to_vec(p).map_err(|e| Error::invalid("current", e))?;
        bytes.push(b'\n');
        fsutil::write_atomic(&self.current_file(), &bytes, 0o644)
    }

    /// The directory a pointer names.
    pub fn snapshot_path(&self, p: &Pointer) -> Result<PathBuf> {
        Ok(self.snapshots_dir().join(p.dir_name()?))
    }

    /// Empties `tmp/`: staging directories and downloads left by a process that was killed.
    pub fn clean_tmp(&self) -> Result<()> {
        let dir = self.tmp_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io(&dir))?;
            fsutil::remove_any(&entry.path())?;
        }
        // Temp files of interrupted atomic writes beside the pointer files.
        let root = std::fs::read_dir(&self.root).map_err(Error::io(&self.root))?;
        for entry in root {
            let entry = entry.map_err(Error::io(&self.root))?;
            if entry.file_name().to_string_lossy().contains(".tmp-") {
                fsutil::remove_any(&entry.path())?;
            }
        }
        Ok(())
    }
}

/// The default state directory for this OS.
pub fn default_state_dir() -> PathBuf {
    if cfg!(windows) {
        let base = std::env::var_os("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
        PathBuf::from(base).join("quiver-agent")
    } else if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/quiver-agent")
    } else {
        PathBuf::from("/var/lib/quiver-agent")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_dir_names() {
        assert_eq!(parse_snapshot_dir_name("7"), Some((7, 0)));
        assert_eq!(parse_snapshot_dir_name("7.2"), Some((7, 2)));
        for bad in ["", "07", "7.0", "7.", ".7", "a", "7.x", "../7", "7/8"] {
            assert_eq!(parse_snapshot_dir_name(bad), None, "{bad:?}");
        }
        let p = Pointer {
            serial: 1,
            dir: "snapshots/../../etc".into(),
        };
        assert!(p.dir_name().is_err());
    }

    #[test]
    fn ids() {
        assert!(check_id("id", "host-01.example").is_ok());
        for bad in ["", ".x", "a/b", "a b", "a%2f"] {
            assert!(check_id("id", bad).is_err(), "{bad:?}");
        }
    }
}
