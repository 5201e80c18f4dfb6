//! The verified cache on disk: snapshot directories, the blob store, and the checks that tell
//! whether what is on disk is still what the signed catalog says.
//!
//! A snapshot directory holds one folder per script selected for this device, with the files
//! at the paths the catalog names, plus `.quiver/` with the signed documents it was built from
//! (script names cannot start with a dot, so the two never collide). Loading a snapshot checks
//! those signatures again with the pinned key, so editing the stored catalog on disk does not
//! let anyone change what the agent believes.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use quiver_catalog::layout::{CATALOG_FILE, CATALOG_SIG_FILE, TIMESTAMP_FILE, TIMESTAMP_SIG_FILE};
use quiver_catalog::{
    Catalog, Entry, FileEntry, Limits, Platform, PublicKey, RelPath, ScriptName, Sha256Hex,
    Timestamp, VerifyError, sha256_hex,
};

use crate::config::{AgentConfig, Pointer, StateDir, parse_snapshot_dir_name};
use crate::error::{Error, Result};
use crate::fetch::BlobCheck;
use crate::fsutil;
pub use crate::fsutil::Flush;

/// Folder inside a snapshot holding the signed catalog and timestamp.
pub const META_DIR: &str = ".quiver";

/// A snapshot on disk whose stored catalog and timestamp verified against the pinned key.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The pointer it was loaded from.
    pub pointer: Pointer,
    /// Its directory.
    pub dir: PathBuf,
    /// The verified catalog.
    pub catalog: Catalog,
    /// Digest of the catalog bytes (what a timestamp names).
    pub catalog_sha256: Sha256Hex,
    /// The timestamp it was applied under.
    pub timestamp: Timestamp,
}

impl Snapshot {
    /// Loads the snapshot a pointer names and verifies its stored documents: signatures by the
    /// pinned key, the catalog being the one the timestamp names, and the pointer's serial.
    /// Expiry is not checked: cached scripts stay runnable while the controller is away.
    pub fn load(
        state: &StateDir,
        pointer: Pointer,
        key: &PublicKey,
        limits: &Limits,
    ) -> Result<Snapshot> {
        let dir = state.snapshot_path(&pointer)?;
        let meta = dir.join(META_DIR);
        let read = |name: &str| -> Result<Vec<u8>> {
            let p = meta.join(name);
            std::fs::read(&p).map_err(Error::io(p))
        };
        let read_text = |name: &str| -> Result<String> {
            String::from_utf8(read(name)?)
                .map_err(|_| Error::invalid(meta.join(name).display().to_string(), "not UTF-8"))
        };
        let ts_bytes = read(TIMESTAMP_FILE)?;
        let ts_sig = read_text(TIMESTAMP_SIG_FILE)?;
        let cat_bytes = read(CATALOG_FILE)?;
        let cat_sig = read_text(CATALOG_SIG_FILE)?;
        // Authenticity of what is on disk: the same key that vouched for it at sync time.
        key.verify(&ts_bytes, &ts_sig)?;
        let timestamp = Timestamp::parse(&ts_bytes, limits.max_timestamp_bytes).map_err(|e| {
            VerifyError::Malformed {
                what: "stored timestamp",
                reason: e.to_string(),
            }
        })?;
        // Mix-and-match and signature of the stored catalog, exactly as at sync time.
        let catalog =
            quiver_catalog::verify_catalog(key, &cat_bytes, &cat_sig, &timestamp, limits)?;
        if catalog.serial != pointer.serial {
            return Err(Error::CacheTampered(format!(
                "current.json names serial {} but {} holds serial {}",
                pointer.serial,
                dir.display(),
                catalog.serial
            )));
        }
        Ok(Snapshot {
            pointer,
            dir,
            catalog_sha256: sha256_hex(&cat_bytes),
            catalog,
            timestamp,
        })
    }

    /// The entries this device caches and may run.
    pub fn entries<'a>(&'a self, cfg: &AgentConfig) -> Vec<&'a Entry> {
        self.catalog.for_device(cfg.platform, &cfg.labels)
    }

    /// The entry for `script`, if it is selected for this device.
    pub fn entry<'a>(&'a self, cfg: &AgentConfig, script: &str) -> Result<&'a Entry> {
        self.entries(cfg)
            .into_iter()
            .find(|e| e.script.as_str() == script)
            .ok_or_else(|| Error::UnknownScript {
                script: script.to_owned(),
                serial: self.pointer.serial,
            })
    }

    /// The folder of a script in this snapshot.
    pub fn script_dir(&self, script: &ScriptName) -> PathBuf {
        self.dir.join(script.as_str())
    }
}

/// Loads the current snapshot; `Ok(None)` before the first sync.
pub fn load_current(
    state: &StateDir,
    key: &PublicKey,
    limits: &Limits,
) -> Result<Option<Snapshot>> {
    match state.load_pointer()? {
        None => Ok(None),
        Some(p) => Snapshot::load(state, p, key, limits).map(Some),
    }
}

/// Joins a catalog path onto a directory component by component. `RelPath` has already
/// refused `..`, roots, drive letters and backslashes, so the result stays inside `dir`.
pub fn join_rel(dir: &Path, path: &RelPath) -> PathBuf {
    let mut out = dir.to_path_buf();
    for c in path.components() {
        out.push(c);
    }
    out
}

/// The mode a file gets on disk: 0755 for launch files and files declared 0755, else 0644.
pub fn expected_mode(entry: &Entry, platform: Platform, file: &FileEntry) -> u32 {
    let is_launch = entry
        .platforms
        .get(&platform)
        .is_some_and(|l| l.file == file.path);
    if is_launch || file.mode == 0o755 {
        0o755
    } else {
        0o644
    }
}

/// Something on disk that is not what the catalog says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// A file or folder the catalog does not list (or a symlink, which the agent never makes).
    Extra {
        /// Where it is.
        path: PathBuf,
    },
    /// A listed file that is missing or differs.
    Bad {
        /// The script it belongs to.
        script: ScriptName,
        /// The catalog entry of the file.
        file: FileEntry,
        /// Where it should be.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Extra { path } => write!(f, "{}: not in the catalog", path.display()),
            Damage::Bad { path, reason, .. } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

/// Checks the selected entries of a snapshot on disk against the catalog: every listed file
/// present with the right size, digest and mode; nothing else in the script folders. Reads
/// only.
pub fn check_snapshot(snap: &Snapshot, cfg: &AgentConfig) -> Result<Vec<Damage>> {
    let entries = snap.entries(cfg);
    let mut damage = Vec::new();
    // Stray top-level items: anything but the selected scripts and the metadata folder.
    let wanted: BTreeSet<&str> = entries.iter().map(|e| e.script.as_str()).collect();
    for item in read_dir_names(&snap.dir)? {
        if item != META_DIR && !wanted.contains(item.as_str()) {
            damage.push(Damage::Extra {
                path: snap.dir.join(item),
            });
        }
    }
    for e in entries {
        damage.extend(check_entry(&snap.script_dir(&e.script), e, cfg.platform)?);
    }
    Ok(damage)
}

/// Checks one script folder against its entry (see [`check_snapshot`]).
pub fn check_entry(dir: &Path, entry: &Entry, platform: Platform) -> Result<Vec<Damage>> {
    let mut damage = Vec::new();
    let files: BTreeSet<&str> = entry.files.iter().map(|f| f.path.as_str()).collect();
    let mut dirs = BTreeSet::new();
    for f in &entry.files {
        let mut prefix = String::new();
        let comps: Vec<&str> = f.path.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(c);
            dirs.insert(prefix.clone());
        }
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => walk_extras(dir, "", &files, &dirs, &mut damage)?,
        Ok(_) => damage.push(Damage::Extra {
            path: dir.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir)(e)),
    }
    for f in &entry.files {
        let path = join_rel(dir, &f.path);
        let mode = expected_mode(entry, platform, f);
        if let Some(reason) = check_file(&path, f, mode)? {
            damage.push(Damage::Bad {
                script: entry.script.clone(),
                file: f.clone(),
                path,
                reason,
            });
        }
    }
    Ok(damage)
}

fn walk_extras(
    dir: &Path,
    rel: &str,
    files: &BTreeSet<&str>,
    dirs: &BTreeSet<String>,
    damage: &mut Vec<Damage>,
) -> Result<()> {
    for name in read_dir_names(dir)? {
        let path = dir.join(&name);
        let r = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let meta = std::fs::symlink_metadata(&path).map_err(Error::io(&path))?;
        if meta.is_dir() && dirs.contains(&r) {
            walk_extras(&path, &r, files, dirs, damage)?;
        } else if !(meta.is_file() && files.contains(r.as_str())) {
            damage.push(Damage::Extra { path });
        }
    }
    Ok(())
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for item in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let item = item.map_err(Error::io(dir))?;
        // A name that is not Unicode cannot be in the catalog: report it by its lossy name
        // (removal uses the real path through `dir.join`, so keep the raw name).
        names.push(item.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// `None` if the file at `path` is a regular file with the entry's size, digest and `mode`.
fn check_file(path: &Path, file: &FileEntry, mode: u32) -> Result<Option<String>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some("missing".into())),
        Err(e) => return Err(Error::io(path)(e)),
    };
    if !meta.is_file() {
        return Ok(Some("not a regular file".into()));
    }
    if meta.len() != file.size {
        return Ok(Some(format!(
            "{} bytes, catalog says {}",
            meta.len(),
            file.size
        )));
    }
    if let Some(m) = fsutil::mode_of(&meta).filter(|m| *m != mode) {
        return Ok(Some(format!("mode {m:o}, expected {mode:o}")));
    }
    let f = File::open(path).map_err(Error::io(path))?;
    match hash_reader(f, file, path)? {
        Ok(()) => Ok(None),
        Err(e) => Ok(Some(e.to_string())),
    }
}

/// Streams a reader through [`BlobCheck`], reading at most `size + 1` bytes.
fn hash_reader(r: impl Read, file: &FileEntry, path: &Path) -> Result<Result<(), VerifyError>> {
    let mut check = BlobCheck::new(file);
    copy_capped(r, file.size.saturating_add(1), path, |chunk| {
        check.update(chunk);
        Ok(())
    })?;
    Ok(check.finish())
}

fn copy_capped(
    r: impl Read,
    cap: u64,
    path: &Path,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut r = r.take(cap);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path)(e)),
        };
        sink(&buf[..n])?;
    }
}

/// What happened when copying a file out of the blob store.
#[derive(Debug)]
pub enum Copied {
    /// The file is in place, verified.
    Done,
    /// The blob is not in the store.
    Missing,
    /// The blob in the store does not match the catalog (it was changed on disk).
    Bad(VerifyError),
}

/// Path of a blob in the store.
pub fn blob_path(state: &StateDir, digest: &Sha256Hex) -> PathBuf {
    state.blobs_dir().join(digest.as_str())
}

/// Copies the blob for `file` to `dest` (temp file, then rename), verifying the bytes as
/// they are copied, and gives the copy `mode`. `dest`'s folder must exist. With
/// [`Flush::EachFile`] the copy is flushed before the rename; with [`Flush::Batched`] the
/// caller flushes before anything publishes `dest`.
pub fn copy_from_blob(
    state: &StateDir,
    file: &FileEntry,
    dest: &Path,
    mode: u32,
    flush: Flush,
) -> Result<Copied> {
    let src = blob_path(state, &file.sha256);
    let blob = match File::open(&src) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Copied::Missing),
        Err(e) => return Err(Error::io(src)(e)),
    };
    let tmp = fsutil::temp_sibling(dest);
    let result = (|| {
        let mut out = fsutil::create_new(&tmp, mode)?;
        let mut check = BlobCheck::new(file);
        copy_capped(blob, file.size.saturating_add(1), &src, |chunk| {
            check.update(chunk);
            std::io::Write::write_all(&mut out, chunk).map_err(Error::io(&tmp))
        })?;
        if let Err(e) = check.finish() {
            return Ok(Copied::Bad(e));
        }
        if flush == Flush::EachFile {
            out.sync_all().map_err(Error::io(&tmp))?;
        }
        drop(out);
        std::fs::rename(&tmp, dest).map_err(Error::io(dest))?;
        Ok(Copied::Done)
    })();
    if !matches!(result, Ok(Copied::Done)) {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Snapshot directories removed.
    pub snapshots: Vec<String>,
    /// Blobs removed.
    pub blobs: usize,
}

/// Keeps the current snapshot and the `keep` newest older ones; removes every other snapshot
/// directory (older ones, and orphans a killed sync left behind), then every blob no kept
/// snapshot uses.
pub fn collect_garbage(
    state: &StateDir,
    current: &Pointer,
    keep: usize,
    cfg: &AgentConfig,
    limits: &Limits,
) -> Result<Collected> {
    let current_name = current.dir_name()?.to_owned();
    let snapshots_dir = state.snapshots_dir();
    let mut older = Vec::new();
    let mut out = Collected::default();
    for name in read_dir_names(&snapshots_dir)? {
        if name == current_name {
            continue;
        }
        match parse_snapshot_dir_name(&name) {
            Some((serial, k)) if serial < current.serial => older.push((serial, k, name)),
            _ => {
                fsutil::remove_any(&snapshots_dir.join(&name))?;
                out.snapshots.push(name);
            }
        }
    }
    older.sort();
    let cut = older.len().saturating_sub(keep);
    for (_, _, name) in older.drain(..cut) {
        fsutil::remove_any(&snapshots_dir.join(&name))?;
        out.snapshots.push(name);
    }
    let mut used = BTreeSet::new();
    for name in std::iter::once(current_name).chain(older.into_iter().map(|(_, _, n)| n)) {
        let cat = snapshots_dir.join(&name).join(META_DIR).join(CATALOG_FILE);
        let Ok(bytes) = std::fs::read(&cat) else {
            continue;
        };
        // Our own file, verified when written; if it no longer parses, its blobs go.
        let Ok(catalog) = Catalog::parse(&bytes, limits) else {
            continue;
        };
        for e in catalog.for_device(cfg.platform, &cfg.labels) {
            used.extend(e.files.iter().map(|f| f.sha256.as_str().to_owned()));
        }
    }
    let blobs_dir = state.blobs_dir();
    for name in read_dir_names(&blobs_dir)? {
        if !used.contains(&name) {
            fsutil::remove_any(&blobs_dir.join(&name))?;
            out.blobs += 1;
        }
    }
    Ok(out)
}
