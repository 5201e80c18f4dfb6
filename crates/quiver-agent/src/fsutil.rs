//! Small file-system helpers for crash-safe writes.
//!
//! The invariant they serve: a file the agent relies on is either the old complete version or
//! the new complete version, never half of either. Writes go to a temporary file in the same
//! directory, are flushed to disk, renamed over the target (atomic on unix; `MoveFileEx` with
//! replace semantics on Windows, which is what `std::fs::rename` uses), and the directory is
//! flushed so the rename itself survives a power cut.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically. On unix the file is created with `mode` from the start
/// (so a secret is never readable by others, even for an instant).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = parent(path)?;
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut f = create_new(&tmp, mode)?;
        f.write_all(bytes).map_err(Error::io(&tmp))?;
        f.sync_all().map_err(Error::io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(Error::io(path))?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates a new file (failing if it exists) with `mode` on unix, exactly: the umask is
/// corrected for with an explicit chmod.
pub fn create_new(path: &Path, mode: u32) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    let f = opts.open(path).map_err(Error::io(path))?;
    set_mode(&f, path, mode)?;
    Ok(f)
}

/// Sets the permission bits of an open file (unix; a no-op on Windows, where files inherit the
/// directory's ACL).
pub fn set_mode(f: &File, path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(Error::io(path))?;
    }
    #[cfg(not(unix))]
    let _ = (f, path, mode);
    Ok(())
}

/// The permission bits of a file, or `None` where the platform has none.
pub fn mode_of(meta: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(meta.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// Flushes a directory's entries to disk (unix). Windows cannot open directories this way and
/// journals renames itself, so it is a no-op there.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// How the files written by one sync reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Each file is flushed (`fsync`) as it is written, and each folder before a rename
    /// publishes it.
    EachFile,
    /// Files are written without waiting for the disk, and one [`sync_filesystem`] flushes
    /// them all before anything that names them is published. A sync writes thousands of
    /// small files: one flush per file made a cold sync of 2,000 scripts wait for 10,000
    /// flushes.
    Batched,
}

impl Flush {
    /// [`Flush::Batched`] where one call flushes a whole file system (Linux `syncfs(2)`),
    /// else [`Flush::EachFile`].
    pub fn for_platform() -> Flush {
        if cfg!(target_os = "linux") {
            Flush::Batched
        } else {
            Flush::EachFile
        }
    }
}

/// Flushes everything written to the file system holding `path` (file contents, inodes and
/// directory entries alike) with one `syncfs(2)`.
#[cfg(target_os = "linux")]
pub fn sync_filesystem(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let d = File::open(path).map_err(Error::io(path))?;
    // SAFETY: `d` is an open descriptor for the duration of the call; syncfs(2) reads no
    // memory of ours.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(Error::io(path)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Only Linux has `syncfs(2)`; [`Flush::for_platform`] never picks [`Flush::Batched`]
/// elsewhere.
#[cfg(not(target_os = "linux"))]
pub fn sync_filesystem(path: &Path) -> Result<()> {
    Err(Error::invalid(
        path.display().to_string(),
        "flushing a whole file system is not supported on this platform",
    ))
}

/// Creates `dir` (and parents) if missing; on unix, a directory it creates is private (0700).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(Error::io(dir))
}

/// Removes a file or a directory tree if it exists.
pub fn remove_any(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path)(e)),
    };
    let result = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path)(e)),
        _ => Ok(()),
    }
}

/// A unique temporary name beside `path`, starting with a dot so it is never mistaken for a
/// script or snapshot name (neither may start with a dot).
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ))
}

fn parent(path: &Path) -> Result<&Path> {
    path.parent()
        .ok_or_else(|| Error::invalid(path.display().to_string(), "has no parent directory"))
}
