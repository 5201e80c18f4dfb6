//! One sync: fetch and verify the timestamp, then (only if it names a catalog the agent does
//! not have) the catalog and the blobs this device needs; stage a complete snapshot beside the
//! current one, flush it, and switch `current.json` atomically. Every sync also re-checks the
//! files of the current snapshot and repairs what was changed on disk.
//!
//! Ordering is the safety argument, so each step says which property it serves:
//! nothing downloaded is trusted before its check, nothing is written into `snapshots/` that
//! is not complete and verified, and `current.json` changes last. A failure at any step leaves
//! `current.json` as it was; a kill at any moment leaves only `tmp/` debris, removed at the
//! next start.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use quiver_catalog::api::SyncProblem;
use quiver_catalog::layout::{
    CATALOG_FILE, CATALOG_SIG_FILE, TIMESTAMP_FILE, TIMESTAMP_SIG_FILE, blob_rel_path,
};
use quiver_catalog::{Entry, FileEntry, VerifyError, verify_catalog, verify_timestamp};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Agent;
use crate::cache::{
    self, Copied, Damage, Flush, META_DIR, Snapshot, check_snapshot, copy_from_blob, expected_mode,
    join_rel,
};
use crate::config::{Pointer, StateDir, parse_snapshot_dir_name};
use crate::error::{Error, Result};
use crate::fetch::{Fetched, MAX_SIG_BYTES, Session};
use crate::fsutil;

/// Choices of one sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOptions {
    /// Older snapshots kept besides the current one. Default 3.
    pub keep: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions { keep: 3 }
    }
}

/// What a successful sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Serial in use before the sync.
    pub previous_serial: Option<u64>,
    /// Serial in use after the sync.
    pub serial: Option<u64>,
    /// A new snapshot was switched to.
    pub switched: bool,
    /// Scripts in the snapshot now in use.
    pub scripts: usize,
    /// Blobs downloaded.
    pub blobs_fetched: usize,
    /// Files restored in the current snapshot after tampering.
    pub repaired: usize,
    /// Snapshot directories removed by garbage collection.
    pub removed_snapshots: Vec<String>,
    /// Blobs removed by garbage collection.
    pub removed_blobs: usize,
}

/// The last verified timestamp and its ETag, so a warm sync is one conditional GET.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TimestampCache {
    etag: Option<String>,
    timestamp: String,
    signature: String,
}

impl TimestampCache {
    fn load(state: &StateDir) -> Option<TimestampCache> {
        let bytes = std::fs::read(state.timestamp_cache_file()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(&self, state: &StateDir) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| Error::invalid("timestamp cache", e))?;
        fsutil::write_atomic(&state.timestamp_cache_file(), &bytes, 0o644)
    }
}

/// Runs one sync. Problems that did not stop it (a repaired cache file) are pushed onto
/// `problems`; the error that stopped it is returned.
pub fn sync(
    agent: &Agent,
    opts: &SyncOptions,
    problems: &mut Vec<SyncProblem>,
) -> Result<SyncReport> {
    let state = &agent.state;
    state.ensure_layout()?;
    let _lock = state.lock_exclusive()?;
    // Crash safety: whatever a killed sync left is staging debris; none of it is trusted.
    state.clean_tmp()?;
    let session = agent.http.session();

    let pointer = match state.load_pointer() {
        Ok(p) => p,
        Err(e) => {
            problem(problems, "cache-tampered", e.to_string());
            None
        }
    };
    let applied = pointer.as_ref().map(|p| p.serial);
    let current = match pointer {
        None => None,
        Some(p) => match Snapshot::load(state, p, &agent.key, &agent.limits) {
            Ok(s) => Some(s),
            Err(e) => {
                // The stored documents no longer verify: rebuild from the network, still
                // refusing anything older than the serial we had (rollback).
                problem(problems, "cache-tampered", e.to_string());
                None
            }
        },
    };
    let mut report = SyncReport {
        previous_serial: applied,
        serial: applied,
        ..SyncReport::default()
    };

    // Step 1: the timestamp, conditionally (a warm sync stops at a 304).
    let base = agent.config.snapshot_base();
    let cached = TimestampCache::load(state).filter(|c| {
        agent
            .key
            .verify(c.timestamp.as_bytes(), &c.signature)
            .is_ok()
    });
    let etag = cached.as_ref().and_then(|c| c.etag.as_deref());
    let ts_url = format!("{base}{TIMESTAMP_FILE}");
    let (ts_bytes, ts_sig, new_etag) =
        match session.get(&ts_url, agent.limits.max_timestamp_bytes, etag)? {
            Fetched::NotModified => match &cached {
                Some(c) => (c.timestamp.clone().into_bytes(), c.signature.clone(), None),
                None => unreachable_not_modified(&ts_url)?,
            },
            Fetched::Body { bytes, etag } => {
                let sig = get_sig(
                    &session,
                    &format!("{base}{TIMESTAMP_SIG_FILE}"),
                    "timestamp",
                )?;
                (bytes, sig, Some(etag))
            }
        };
    // Step 2: signature by the pinned key, rollback against the applied serial, freeze
    // against the clock (all in `verify_timestamp`).
    let ts = verify_timestamp(
        &agent.key,
        &ts_bytes,
        &ts_sig,
        OffsetDateTime::now_utc(),
        applied,
        &agent.limits,
    )?;
    if let Some(etag) = new_etag
        && let Ok(text) = String::from_utf8(ts_bytes.clone())
    {
        // Only a verified timestamp is remembered; it is what a later 304 will stand for.
        // Unchanged (a server without ETags), it is not written again.
        let fresh = TimestampCache {
            etag,
            timestamp: text,
            signature: ts_sig.clone(),
        };
        if cached.as_ref() != Some(&fresh) {
            fresh.save(state)?;
        }
    }

    // Step 3: nothing new? Then only make sure the cache on disk is intact.
    if let Some(snap) = current
        .as_ref()
        .filter(|c| c.pointer.serial == ts.serial && c.catalog_sha256 == ts.catalog_sha256)
    {
        report.repaired = repair(agent, &session, snap, problems, &mut report)?;
        report.scripts = snap.entries(&agent.config).len();
        return Ok(report);
    }

    // Step 4: the catalog the timestamp names: size cap, mix-and-match (size and digest),
    // signature, strict parse (path escapes), serial (all in `verify_catalog`).
    let cat_url = format!("{base}{CATALOG_FILE}");
    let cat_bytes = match session.get(&cat_url, agent.limits.max_catalog_bytes, None)? {
        Fetched::Body { bytes, .. } => bytes,
        Fetched::NotModified => unreachable_not_modified(&cat_url)?,
    };
    let cat_sig = get_sig(&session, &format!("{base}{CATALOG_SIG_FILE}"), "catalog")?;
    let catalog = verify_catalog(&agent.key, &cat_bytes, &cat_sig, &ts, &agent.limits)?;
    let entries = catalog.for_device(agent.config.platform, &agent.config.labels);

    // Step 5: download the blobs the store lacks (each verified as it streams), then stage
    // the snapshot in tmp/, every file verified again as it is copied out of the store.
    let flush = Flush::for_platform();
    let fresh = prefetch(agent, &session, &entries, flush, &mut report)?;
    let stage = state
        .tmp_dir()
        .join(format!("stage-{}-{:08x}", ts.serial, rand::random::<u32>()));
    let staged = (|| {
        fsutil::ensure_private_dir(&stage)?;
        for entry in &entries {
            let how = Install {
                flush,
                fresh: &fresh,
            };
            stage_entry(agent, &session, entry, &stage, how, problems, &mut report)?;
        }
        let meta = stage.join(META_DIR);
        std::fs::create_dir(&meta).map_err(Error::io(&meta))?;
        for (name, bytes) in [
            (CATALOG_FILE, cat_bytes.as_slice()),
            (CATALOG_SIG_FILE, cat_sig.as_bytes()),
            (TIMESTAMP_FILE, ts_bytes.as_slice()),
            (TIMESTAMP_SIG_FILE, ts_sig.as_bytes()),
        ] {
            write_new(&meta.join(name), bytes, flush)?;
        }
        // Crash safety: the rename below must never publish a folder whose files or entries
        // are not on disk. Flushed file by file: flush the folders too. Batched: one flush of
        // the file system covers every file and folder written above.
        match flush {
            Flush::EachFile => fsync_tree(&stage),
            Flush::Batched => fsutil::sync_filesystem(&stage),
        }
    })();
    if let Err(e) = staged {
        // A refused snapshot leaves nothing behind (a killed sync leaves it to clean_tmp).
        let _ = fsutil::remove_any(&stage);
        return Err(e);
    }

    // Step 6: move the complete snapshot into snapshots/, then switch the pointer.
    let name = free_snapshot_name(state, ts.serial)?;
    let dest = state.snapshots_dir().join(&name);
    std::fs::rename(&stage, &dest).map_err(Error::io(&dest))?;
    fsutil::fsync_dir(&state.snapshots_dir())?;
    let pointer = Pointer {
        serial: ts.serial,
        dir: format!("snapshots/{name}"),
    };
    // The switch: one atomic rename of current.json.
    state.save_pointer(&pointer)?;
    report.serial = Some(ts.serial);
    report.switched = true;
    report.scripts = entries.len();

    // Step 7: forget what is no longer needed.
    let collected =
        cache::collect_garbage(state, &pointer, opts.keep, &agent.config, &agent.limits)?;
    report.removed_snapshots = collected.snapshots;
    report.removed_blobs = collected.blobs;
    Ok(report)
}

/// Downloads every blob `entries` need that the store does not hold yet, each into tmp/ and
/// verified (size and digest) as it streams, then moves them into the store. The store only
/// ever receives complete, flushed files: file by file, or (batched) all of them with one
/// flush before the first is moved in, so a power cut never leaves a blob that fails its
/// check later and looks like tampering.
///
/// Each blob is written with the mode of its first use in `entries`, and the digests with
/// that mode are returned: those files were verified moments ago, so staging links them
/// instead of copying and hashing them a second time.
fn prefetch(
    agent: &Agent,
    session: &Session<'_>,
    entries: &[&Entry],
    flush: Flush,
    report: &mut SyncReport,
) -> Result<HashMap<String, u32>> {
    let mut wanted: BTreeMap<&str, (&FileEntry, u32)> = BTreeMap::new();
    for entry in entries {
        for f in &entry.files {
            if !wanted.contains_key(f.sha256.as_str())
                && !cache::blob_path(&agent.state, &f.sha256).exists()
            {
                let mode = expected_mode(entry, agent.config.platform, f);
                wanted.insert(f.sha256.as_str(), (f, mode));
            }
        }
    }
    let wanted: Vec<(&FileEntry, u32)> = wanted.into_values().collect();
    let fetched: Mutex<Vec<(PathBuf, &FileEntry)>> = Mutex::new(Vec::with_capacity(wanted.len()));
    let result = (|| {
        download_all(agent, session, &wanted, flush, &fetched)?;
        if flush == Flush::Batched && !wanted.is_empty() {
            fsutil::sync_filesystem(&agent.state.tmp_dir())?;
        }
        Ok(())
    })();
    let fetched = fetched.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = result {
        for (tmp, _) in &fetched {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    report.blobs_fetched += fetched.len();
    for (tmp, file) in &fetched {
        let dest = cache::blob_path(&agent.state, &file.sha256);
        std::fs::rename(tmp, &dest).map_err(Error::io(dest))?;
    }
    Ok(wanted
        .iter()
        .map(|(f, mode)| (f.sha256.as_str().to_string(), *mode))
        .collect())
}

/// How staging puts files in place.
#[derive(Clone, Copy)]
struct Install<'a> {
    /// How written files reach the disk.
    flush: Flush,
    /// Blobs downloaded and verified by this sync, with the mode they were written with.
    fresh: &'a HashMap<String, u32>,
}

/// How many blobs one sync downloads at once. A cold sync is thousands of small files:
/// one request at a time leaves the link idle between them (and a core idle while the
/// other hashes), while a few in flight keep both busy. Small, so a sync stays a light
/// load on the server and the endpoint.
const PARALLEL_FETCHES: usize = 4;

/// Downloads every file of `wanted` into tmp/ with up to [`PARALLEL_FETCHES`] requests in
/// flight, adding each finished download to `fetched`. The first failure stops the others
/// from starting new downloads and is returned; what was fetched is left in `fetched` for
/// the caller to remove.
fn download_all<'e>(
    agent: &Agent,
    session: &Session<'_>,
    wanted: &[(&'e FileEntry, u32)],
    flush: Flush,
    fetched: &Mutex<Vec<(PathBuf, &'e FileEntry)>>,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let worker = || {
        loop {
            if failed.lock().map_or(true, |f| f.is_some()) {
                return;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((file, mode)) = wanted.get(i) else {
                return;
            };
            match download_blob(agent, session, file, *mode, flush) {
                Ok(tmp) => {
                    if let Ok(mut v) = fetched.lock() {
                        v.push((tmp, *file));
                    }
                }
                Err(e) => {
                    if let Ok(mut f) = failed.lock() {
                        f.get_or_insert(e);
                    }
                    return;
                }
            }
        }
    };
    let workers = PARALLEL_FETCHES.min(wanted.len());
    std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(worker);
        }
        worker();
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn stage_entry(
    agent: &Agent,
    session: &Session<'_>,
    entry: &Entry,
    stage: &Path,
    how: Install<'_>,
    problems: &mut Vec<SyncProblem>,
    report: &mut SyncReport,
) -> Result<()> {
    // `ScriptName` and `RelPath` components cannot climb out: the paths stay in `stage`.
    let dir = stage.join(entry.script.as_str());
    for file in &entry.files {
        let dest = join_rel(&dir, &file.path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        let mode = expected_mode(entry, agent.config.platform, file);
        install(agent, session, file, &dest, mode, how, problems, report)?;
    }
    Ok(())
}

/// Puts the verified content of `file` at `dest`: from the blob store, or downloaded into it
/// first. A blob changed on disk is reported and downloaded again. `how.flush` says how
/// `dest` is made durable (a blob downloaded here is always flushed before it enters the
/// store).
///
/// A blob this sync downloaded with the mode `dest` needs is hard-linked rather than
/// copied: it was verified as it streamed in, and a cold sync would otherwise write and
/// hash every byte twice. The link shares the file with the store, which is safe because
/// every sync re-checks each cached file against the catalog, and a changed one is
/// fetched again whichever name was changed. Where links fail (another file system, no
/// link support), the file is copied as usual.
#[allow(clippy::too_many_arguments)]
fn install(
    agent: &Agent,
    session: &Session<'_>,
    file: &FileEntry,
    dest: &Path,
    mode: u32,
    how: Install<'_>,
    problems: &mut Vec<SyncProblem>,
    report: &mut SyncReport,
) -> Result<()> {
    let flush = how.flush;
    if how.fresh.get(file.sha256.as_str()) == Some(&mode)
        && std::fs::hard_link(cache::blob_path(&agent.state, &file.sha256), dest).is_ok()
    {
        return Ok(());
    }
    match copy_from_blob(&agent.state, file, dest, mode, flush)? {
        Copied::Done => return Ok(()),
        Copied::Missing => {}
        Copied::Bad(e) => {
            problem(
                problems,
                "cache-tampered",
                format!(
                    "cached blob {} was changed on disk ({e}); fetching it again",
                    file.sha256
                ),
            );
            fsutil::remove_any(&cache::blob_path(&agent.state, &file.sha256))?;
        }
    }
    fetch_blob(agent, session, file)?;
    report.blobs_fetched += 1;
    match copy_from_blob(&agent.state, file, dest, mode, flush)? {
        Copied::Done => Ok(()),
        Copied::Missing => Err(Error::CacheTampered(format!(
            "blob {} vanished right after it was stored",
            file.sha256
        ))),
        Copied::Bad(e) => Err(e.into()),
    }
}

/// Downloads a blob, flushed, into the blob store (see [`download_blob`]).
fn fetch_blob(agent: &Agent, session: &Session<'_>, file: &FileEntry) -> Result<()> {
    let tmp = download_blob(agent, session, file, 0o644, Flush::EachFile)?;
    let dest = cache::blob_path(&agent.state, &file.sha256);
    std::fs::rename(&tmp, &dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(dest)(e)
    })
}

/// Downloads a blob into a new file in tmp/, verifying size and digest while it streams, and
/// returns its path. With [`Flush::EachFile`] the file is flushed before this returns.
fn download_blob(
    agent: &Agent,
    session: &Session<'_>,
    file: &FileEntry,
    mode: u32,
    flush: Flush,
) -> Result<PathBuf> {
    let url = format!(
        "{}{}",
        agent.config.snapshot_base(),
        blob_rel_path(&file.sha256)
    );
    let tmp = agent.state.tmp_dir().join(format!(
        "blob-{}-{:08x}",
        file.sha256,
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut out = fsutil::create_new(&tmp, mode)?;
        session.get_blob(&url, file, &mut out)?;
        if flush == Flush::EachFile {
            out.sync_all().map_err(Error::io(&tmp))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Re-checks the current snapshot's files and restores anything changed on disk from the
/// verified blobs (downloading a blob again if it is damaged too). Returns the repair count.
fn repair(
    agent: &Agent,
    session: &Session<'_>,
    snap: &Snapshot,
    problems: &mut Vec<SyncProblem>,
    report: &mut SyncReport,
) -> Result<usize> {
    let damage = check_snapshot(snap, &agent.config)?;
    for d in &damage {
        match d {
            Damage::Extra { path } => fsutil::remove_any(path)?,
            Damage::Bad {
                script, file, path, ..
            } => {
                let entry = snap.entry(&agent.config, script.as_str())?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
                }
                let mode = expected_mode(entry, agent.config.platform, file);
                // A repair of the current snapshot is published at once: flush it.
                install(
                    agent,
                    session,
                    file,
                    path,
                    mode,
                    Install {
                        flush: Flush::EachFile,
                        fresh: &HashMap::new(),
                    },
                    problems,
                    report,
                )?;
            }
        }
        let what = match d {
            Damage::Extra { .. } => "removed",
            Damage::Bad { .. } => "restored from the verified blob",
        };
        problem(problems, "cache-tampered", format!("{d}; {what}"));
    }
    Ok(damage.len())
}

fn get_sig(session: &Session<'_>, url: &str, what: &'static str) -> Result<String> {
    let bytes = match session.get(url, MAX_SIG_BYTES, None)? {
        Fetched::Body { bytes, .. } => bytes,
        Fetched::NotModified => unreachable_not_modified(url)?,
    };
    String::from_utf8(bytes).map_err(|_| {
        VerifyError::BadSignature {
            what,
            reason: "signature file is not UTF-8".into(),
        }
        .into()
    })
}

/// A 304 to an unconditional request: the server is broken.
fn unreachable_not_modified<T>(url: &str) -> Result<T> {
    Err(Error::Status {
        url: url.to_owned(),
        status: 304,
        body: "304 Not Modified to a request that was not conditional".into(),
    })
}

fn problem(problems: &mut Vec<SyncProblem>, code: &str, message: String) {
    tracing::warn!(code, "{message}");
    problems.push(SyncProblem {
        code: code.to_owned(),
        message,
    });
}

/// `N`, or `N.k` with the first free `k` when a directory for serial `N` already exists (a
/// snapshot rebuilt for the same serial, or an orphan of a killed sync).
fn free_snapshot_name(state: &StateDir, serial: u64) -> Result<String> {
    let dir = state.snapshots_dir();
    for k in 0u32.. {
        let name = if k == 0 {
            serial.to_string()
        } else {
            format!("{serial}.{k}")
        };
        debug_assert!(parse_snapshot_dir_name(&name).is_some());
        match std::fs::symlink_metadata(dir.join(&name)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(name),
            Err(e) => return Err(Error::io(dir.join(&name))(e)),
            Ok(_) => {}
        }
    }
    Err(Error::invalid(
        dir.display().to_string(),
        "no free snapshot name",
    ))
}

fn write_new(path: &Path, bytes: &[u8], flush: Flush) -> Result<()> {
    let mut f = fsutil::create_new(path, 0o644)?;
    std::io::Write::write_all(&mut f, bytes).map_err(Error::io(path))?;
    if flush == Flush::EachFile {
        f.sync_all().map_err(Error::io(path))?;
    }
    Ok(())
}

/// Flushes every directory under `root` (deepest first) and `root` itself.
fn fsync_tree(root: &Path) -> Result<()> {
    for item in std::fs::read_dir(root).map_err(Error::io(root))? {
        let item = item.map_err(Error::io(root))?;
        let ty = item.file_type().map_err(Error::io(item.path()))?;
        if ty.is_dir() {
            fsync_tree(&item.path())?;
        }
    }
    fsutil::fsync_dir(root)
}
